-- Detached jobs (`execute` with `detach`) are recorded like other executions, flagged.
ALTER TABLE executions ADD COLUMN detached INTEGER NOT NULL DEFAULT 0;
