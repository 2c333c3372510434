-- Defines `:Mcli {cmd} {args}`, which runs an mcli command with its output in a split (see
-- lua/mcli/init.lua). Needs Neovim 0.7 or later.

if vim.g.loaded_mcli then
  return
end
vim.g.loaded_mcli = 1

if vim.fn.has('nvim-0.7') ~= 1 then
  vim.notify('mcli: this plugin needs Neovim 0.7 or later', vim.log.levels.WARN)
  return
end

vim.api.nvim_create_user_command('Mcli', function(opts)
  require('mcli').command(opts.fargs)
end, {
  nargs = '+',
  complete = function(arglead, cmdline, cursorpos)
    return require('mcli').complete(arglead, cmdline, cursorpos)
  end,
  desc = 'Run an mcli command, its output in a split',
})

vim.api.nvim_create_user_command('McliCancel', function()
  require('mcli').cancel()
end, { desc = 'Cancel the mcli command of this output buffer' })
