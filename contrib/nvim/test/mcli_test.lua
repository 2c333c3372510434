-- Tests of the mcli Neovim plugin against a running server, run by tests/tests/editors.rs:
--
--   nvim --headless -u NONE -i NONE --cmd 'set rtp^=contrib/nvim' --cmd 'runtime plugin/mcli.lua' \
--        -c 'luafile contrib/nvim/test/mcli_test.lua'
--
-- with MCLI_TEST_CLIENT (the mcli-client binary), MCLI_TEST_DIR (a directory to run commands
-- in), MCLI_TEST_GO (the file whose creation lets `slowlines` go on) and MCLI_TEST_PIDFILE
-- (where `longrun` writes its pid). `slowlines` prints "line 1", its args joined by "|" and its
-- directory, waits for MCLI_TEST_GO, then prints "line 2". `longrun` writes its pid, prints
-- "started" and sleeps for 300 s. `latin1` prints "caf\233\n", which is not UTF-8. Exits 0
-- when every check passes, else 1 with the reason.

local failures = 0

local function log(text)
  io.stderr:write(text .. '\n')
end

local function wait(what, cond)
  if not vim.wait(60000, cond, 20) then
    error('timed out waiting until ' .. what, 0)
  end
end

local function text(buf)
  return table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), '\n')
end

local function has_line(buf, line)
  for _, l in ipairs(vim.api.nvim_buf_get_lines(buf, 0, -1, false)) do
    if l == line then
      return true
    end
  end
  return false
end

local function var(buf, name)
  local ok, value = pcall(vim.api.nvim_buf_get_var, buf, name)
  return ok and value or nil
end

local function check(cond, message)
  if not cond then
    error(message, 2)
  end
end

local function eq(got, want, what)
  if not vim.deep_equal(got, want) then
    error(('%s: got %s, want %s'):format(what, vim.inspect(got), vim.inspect(want)), 2)
  end
end

local function wait_end(buf)
  wait('the command of buffer ' .. buf .. ' ends', function()
    return var(buf, 'mcli_status') ~= 'running'
  end)
end

--- Runs `:Mcli ARGS` and returns the output buffer it opened (the current one after it).
local function mcli(args)
  local before = vim.api.nvim_get_current_buf()
  vim.cmd('Mcli ' .. args)
  local buf = vim.api.nvim_get_current_buf()
  check(buf ~= before, ':Mcli opened no window on a new buffer')
  return buf
end

local function longrun_pid()
  local pidfile = io.open(os.getenv('MCLI_TEST_PIDFILE'))
  local pid = tonumber(pidfile:read('*l'))
  pidfile:close()
  check(pid and pid > 0, 'no pid in the pid file')
  return pid
end

--- Waits until process `pid` is gone (or a zombie about to be reaped).
local function wait_gone(pid)
  wait('process ' .. pid .. ' is gone', function()
    local stat = io.open('/proc/' .. pid .. '/stat')
    if not stat then
      return true
    end
    local line = stat:read('*l') or ''
    stat:close()
    return line:match('%) (%a)') == 'Z'
  end)
end

local tests = {}

function tests.names_come_from_list()
  local names = require('mcli').command_names()
  for _, name in ipairs({ 'echo', 'hello', 'exit', 'slowlines', 'longrun' }) do
    check(vim.tbl_contains(names, name), name .. ' is not in ' .. vim.inspect(names))
  end
  eq(vim.fn.getcompletion('Mcli slow', 'cmdline'), { 'slowlines' }, 'completion of "Mcli slow"')
  eq(vim.fn.getcompletion('Mcli lon', 'cmdline'), { 'longrun' }, 'completion of "Mcli lon"')
  eq(vim.fn.getcompletion('Mcli zz', 'cmdline'), {}, 'completion of "Mcli zz"')
  eq(vim.fn.getcompletion('Mcli slowlines ', 'cmdline'), {}, 'completion after the name')
end

function tests.output_streams_into_the_split()
  local wins = #vim.api.nvim_list_wins()
  local buf = mcli('slowlines a\\ b c')
  eq(#vim.api.nvim_list_wins(), wins + 1, 'windows after :Mcli')
  wait('line 1 is in the buffer', function()
    return has_line(buf, 'line 1')
  end)
  -- The command is still running: it waits for the go file.
  eq(var(buf, 'mcli_status'), 'running', 'status while running')
  eq(var(buf, 'mcli_state'), 'running', 'state while running')
  check(not text(buf):find('line 2', 1, true), 'line 2 came before the go file')
  local go = io.open(os.getenv('MCLI_TEST_GO'), 'w')
  go:close()
  wait_end(buf)
  check(has_line(buf, 'line 2'), 'no line 2 in:\n' .. text(buf))
  check(has_line(buf, 'args: a b|c'), 'no args line in:\n' .. text(buf))
  check(has_line(buf, os.getenv('MCLI_TEST_DIR')), 'not run in the cwd:\n' .. text(buf))
  check(text(buf):find('[mcli] slowlines completed', 1, true), 'no end line in:\n' .. text(buf))
  eq(var(buf, 'mcli_status'), 'completed', 'status')
  eq(var(buf, 'mcli_state'), 'exit 0', 'state')
end

function tests.bytes_that_are_not_utf8_arrive()
  -- `latin1` prints "caf\233\n"; the server sends that chunk as `data_b64`.
  local buf = mcli('latin1')
  wait_end(buf)
  eq(var(buf, 'mcli_status'), 'completed', 'status')
  check(has_line(buf, 'caf\233'), 'no latin-1 line in:\n' .. text(buf))
end

function tests.a_failure_shows_its_exit_status()
  local buf = mcli('exit 3')
  wait_end(buf)
  eq(var(buf, 'mcli_status'), 'failed', 'status')
  eq(var(buf, 'mcli_exit_code'), 3, 'exit code')
  eq(var(buf, 'mcli_state'), 'exit 3', 'state')
  check(text(buf):find('[mcli] exit failed with exit code 3', 1, true), 'no end line in:\n' .. text(buf))
end

function tests.an_unknown_command_is_reported()
  local buf = mcli('helo')
  wait_end(buf)
  eq(var(buf, 'mcli_status'), 'error', 'status')
  eq(var(buf, 'mcli_state'), 'error', 'state')
  check(text(buf):find('unknown command `helo`; did you mean `hello`?', 1, true), 'no error in:\n' .. text(buf))
end

function tests.ctrl_c_cancels()
  local buf = mcli('longrun')
  wait('longrun has started', function()
    return has_line(buf, 'started')
  end)
  local pid = longrun_pid()
  eq(vim.api.nvim_get_current_buf(), buf, 'the current buffer')
  vim.api.nvim_feedkeys(vim.api.nvim_replace_termcodes('<C-c>', true, false, true), 'x', false)
  wait_end(buf)
  eq(var(buf, 'mcli_status'), 'cancelled', 'status')
  eq(var(buf, 'mcli_state'), 'cancelled', 'state')
  check(text(buf):find('[mcli] longrun was cancelled', 1, true), 'no end line in:\n' .. text(buf))
  wait_gone(pid)
end

function tests.disconnecting_ends_the_command_and_says_so()
  local buf = mcli('longrun')
  wait('longrun has started', function()
    return has_line(buf, 'started')
  end)
  local pid = longrun_pid()
  require('mcli').disconnect()
  wait_end(buf)
  eq(var(buf, 'mcli_status'), 'error', 'status')
  check(
    text(buf):find('[mcli] the connection to the server ended: mcli-client exited with status', 1, true),
    'no message in:\n' .. text(buf)
  )
  -- The server saw the hang-up and cancelled the command.
  wait_gone(pid)
  -- The next call connects again.
  check(vim.tbl_contains(require('mcli').command_names(), 'echo'), 'no echo after reconnecting')
end

function tests.a_missing_client_is_reported()
  local mcli_module = require('mcli')
  local client = mcli_module.config.client
  mcli_module.disconnect()
  mcli_module.setup({ client = '/nonexistent/mcli-client' })
  local ok, err = pcall(mcli_module.run, 'echo', {})
  mcli_module.setup({ client = client })
  check(not ok, 'run did not fail')
  eq(err, 'mcli: cannot find `/nonexistent/mcli-client`; set `client` in require("mcli").setup()', 'the error')
end

local order = {
  'names_come_from_list',
  'output_streams_into_the_split',
  'bytes_that_are_not_utf8_arrive',
  'a_failure_shows_its_exit_status',
  'an_unknown_command_is_reported',
  'ctrl_c_cancels',
  'disconnecting_ends_the_command_and_says_so',
  'a_missing_client_is_reported',
}

require('mcli').setup({ client = os.getenv('MCLI_TEST_CLIENT') })
vim.cmd('cd ' .. vim.fn.fnameescape(os.getenv('MCLI_TEST_DIR')))
for _, name in ipairs(order) do
  local ok, err = xpcall(tests[name], debug.traceback)
  if ok then
    log('ok     ' .. name)
  else
    failures = failures + 1
    log('FAILED ' .. name .. ': ' .. tostring(err))
  end
  vim.cmd('silent! only')
end
log(('%d of %d nvim tests failed'):format(failures, #order))
if failures > 0 then
  vim.cmd('cquit 1')
else
  vim.cmd('qall!')
end
