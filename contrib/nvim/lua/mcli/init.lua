--- mcli for Neovim: runs mcli commands and streams their output into a split.
---
--- It talks JSON-RPC to one `mcli-client --stdio` process, which bridges to the shared mcli
--- server (starting it if none runs). The framing (`Content-Length` headers) is done here on top
--- of `jobstart`, so that it works the same from Neovim 0.7 on, whose `vim.lsp.rpc` differs from
--- later releases. The protocol is described in docs/protocol.md of the mcli sources.

local M = {}

--- The settings; change them with `require('mcli').setup({...})`.
M.config = {
  -- The `mcli-client` program: a name looked up on $PATH, or a path.
  client = 'mcli-client',
  -- Its arguments; put { '-s', 'NAME', '--stdio' } to talk to another server.
  args = { '--stdio' },
  -- Run commands with Neovim's environment (else they get the server's).
  send_env = true,
  -- Seconds a command may run, or nil for the server's own limit.
  timeout = nil,
  -- The Ex command that opens the output window.
  split = 'botright 12split',
  -- Milliseconds to wait for the list of commands when completing.
  list_timeout = 10000,
}

--- The connection to `mcli-client --stdio`, or nil: its job, unparsed input, the callbacks of
--- requests in flight and the runs by request id.
local conn = nil

--- The runs by buffer number, for cancelling from the output buffer.
local runs_by_buf = {}

--- How many output buffers were made, to give each a name of its own.
local buffers_made = 0

function M.setup(opts)
  M.config = vim.tbl_extend('force', M.config, opts or {})
end

local function null_to_nil(value)
  if value == vim.NIL then
    return nil
  end
  return value
end

local B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'

--- Decodes standard base64 (`vim.base64` only exists from Neovim 0.10 on).
local function base64_decode(text)
  local out, bits, nbits = {}, 0, 0
  for char in text:gmatch('[^=%s]') do
    local value = B64:find(char, 1, true)
    if value then
      bits = bits * 64 + (value - 1)
      nbits = nbits + 6
      if nbits >= 8 then
        nbits = nbits - 8
        local byte = math.floor(bits / 2 ^ nbits)
        out[#out + 1] = string.char(byte)
        bits = bits - byte * 2 ^ nbits
      end
    end
  end
  return table.concat(out)
end

local function send(c, message)
  message.jsonrpc = '2.0'
  local body = vim.json.encode(message)
  vim.fn.chansend(c.job, 'Content-Length: ' .. #body .. '\r\n\r\n' .. body)
end

local function request(c, method, params, callback)
  c.next_id = c.next_id + 1
  local id = c.next_id
  c.pending[id] = callback
  send(c, { id = id, method = method, params = params })
  return id
end

local function notify(c, method, params)
  send(c, { method = method, params = params })
end

--- Appends `text` to `buf`, continuing its last line; windows at its end follow it.
local function append(buf, text)
  if not vim.api.nvim_buf_is_valid(buf) then
    return
  end
  local lines = vim.split(text:gsub('\r\n', '\n'), '\n', { plain = true })
  local count = vim.api.nvim_buf_line_count(buf)
  local following = {}
  for _, win in ipairs(vim.fn.win_findbuf(buf)) do
    if vim.api.nvim_win_get_cursor(win)[1] == count then
      following[#following + 1] = win
    end
  end
  local last = vim.api.nvim_buf_get_lines(buf, count - 1, count, false)[1] or ''
  lines[1] = last .. lines[1]
  vim.bo[buf].modifiable = true
  vim.api.nvim_buf_set_lines(buf, count - 1, count, false, lines)
  vim.bo[buf].modifiable = false
  local new_count = vim.api.nvim_buf_line_count(buf)
  for _, win in ipairs(following) do
    vim.api.nvim_win_set_cursor(win, { new_count, 0 })
  end
end

local function set_state(run, state)
  if vim.api.nvim_buf_is_valid(run.buf) then
    vim.api.nvim_buf_set_var(run.buf, 'mcli_state', state)
    vim.cmd('redrawstatus!')
  end
end

local function on_notification(c, method, params)
  local run = type(params) == 'table' and c.runs[params.request_id]
  if not run then
    return
  end
  if method == 'mcli/output' then
    local text = null_to_nil(params.data) or base64_decode(params.data_b64 or '')
    append(run.buf, text)
  elseif method == 'mcli/queued' then
    append(run.buf, ('[mcli] waiting for a free slot, %s ahead\n'):format(tostring(params.ahead)))
  end
end

local function dispatch(c, message)
  if type(message) ~= 'table' then
    return
  end
  if message.method ~= nil then
    -- The server sends notifications only; it never asks the editor anything.
    if message.id == nil then
      on_notification(c, message.method, null_to_nil(message.params))
    end
    return
  end
  local callback = c.pending[message.id]
  c.pending[message.id] = nil
  if callback then
    callback(null_to_nil(message.error), null_to_nil(message.result))
  end
end

--- Splits the byte stream from the client into `Content-Length` framed messages.
local function on_stdout(c, data)
  -- Each item of `data` ends where a newline was; the first one continues the last chunk.
  c.input = c.input .. table.concat(data, '\n')
  -- Walk the messages with an index and cut the consumed part once, not once per message.
  local at = 1
  while true do
    local header_end = c.input:find('\r\n\r\n', at, true)
    if not header_end then
      break
    end
    local length = tonumber(c.input:sub(at, header_end):lower():match('content%-length:%s*(%d+)'))
    if not length then
      vim.notify('mcli: a message from the server has no Content-Length; disconnecting', vim.log.levels.ERROR)
      vim.fn.jobstop(c.job)
      c.input = ''
      return
    end
    local body_end = header_end + 3 + length
    if #c.input < body_end then
      break
    end
    local ok, message = pcall(vim.json.decode, c.input:sub(header_end + 4, body_end))
    at = body_end + 1
    if ok then
      dispatch(c, message)
    end
  end
  c.input = c.input:sub(at)
end

local function on_exit(c, code)
  c.closed = true
  if conn == c then
    conn = nil
  end
  local reason = ('the connection to the server ended: mcli-client exited with status %d'):format(code)
  if #c.stderr > 0 then
    reason = reason .. ': ' .. table.concat(c.stderr, ' ')
  end
  local pending = c.pending
  c.pending = {}
  for _, callback in pairs(pending) do
    callback({ message = reason }, nil)
  end
end

local function connect()
  if conn then
    return conn
  end
  if vim.fn.executable(M.config.client) ~= 1 then
    error(('mcli: cannot find `%s`; set `client` in require("mcli").setup()'):format(M.config.client), 0)
  end
  local c = { input = '', next_id = 0, pending = {}, runs = {}, stderr = {} }
  local cmd = { M.config.client }
  vim.list_extend(cmd, M.config.args)
  c.job = vim.fn.jobstart(cmd, {
    on_stdout = function(_, data)
      on_stdout(c, data)
    end,
    on_stderr = function(_, data)
      for _, line in ipairs(data) do
        if line ~= '' then
          c.stderr[#c.stderr + 1] = line
          if #c.stderr > 20 then
            table.remove(c.stderr, 1)
          end
        end
      end
    end,
    on_exit = function(_, code)
      on_exit(c, code)
    end,
  })
  if c.job <= 0 then
    error(('mcli: cannot start `%s`'):format(table.concat(cmd, ' ')), 0)
  end
  conn = c
  return c
end

--- Ends the connection to the server; commands still running there are cancelled.
function M.disconnect()
  if conn then
    conn.closed = true
    vim.fn.jobstop(conn.job)
    conn = nil
  end
end

--- The server's commands (`list`): a list of { name, description, error? }.
function M.list()
  local c = connect()
  local done, err, result = false, nil, nil
  request(c, 'list', nil, function(e, r)
    done, err, result = true, e, r
  end)
  if not vim.wait(M.config.list_timeout, function()
    return done
  end, 10) then
    error('mcli: the server did not list its commands in time', 0)
  end
  if err then
    error('mcli: ' .. tostring(err.message), 0)
  end
  return result.commands
end

--- The names of the server's commands.
function M.command_names()
  local names = {}
  for _, command in ipairs(M.list()) do
    names[#names + 1] = command.name
  end
  return names
end

--- Completion for `:Mcli`: command names for the first argument, nothing after it.
function M.complete(arglead, cmdline, cursorpos)
  local before = cmdline:sub(1, cursorpos)
  local words = vim.split(vim.trim(before), '%s+')
  local completing_first = #words == 1 or (#words == 2 and arglead ~= '')
  if not completing_first then
    return {}
  end
  local ok, names = pcall(M.command_names)
  if not ok then
    return {}
  end
  return vim.tbl_filter(function(name)
    return vim.startswith(name, arglead)
  end, names)
end

local function describe(result)
  local status, code, signal = result.status, null_to_nil(result.exit_code), null_to_nil(result.signal)
  if status == 'completed' then
    return 'completed', 'exit ' .. tostring(code)
  elseif status == 'cancelled' then
    return 'was cancelled', 'cancelled'
  elseif status == 'timed_out' then
    return 'timed out', 'timed out'
  elseif signal then
    return 'was ended by signal ' .. signal, 'signal ' .. signal
  elseif code then
    return 'failed with exit code ' .. code, 'exit ' .. code
  end
  return 'ended: ' .. tostring(status), tostring(status)
end

local function finish(run, err, result)
  run.done = true
  run.conn.runs[run.id] = nil
  if not vim.api.nvim_buf_is_valid(run.buf) then
    return
  end
  if err then
    append(run.buf, '[mcli] ' .. tostring(err.message) .. '\n')
    vim.api.nvim_buf_set_var(run.buf, 'mcli_status', 'error')
    set_state(run, 'error')
    return
  end
  local how, state = describe(result)
  local seconds = (null_to_nil(result.duration_ms) or 0) / 1000
  append(run.buf, ('\n[mcli] %s %s after %.2f s\n'):format(run.command, how, seconds))
  vim.api.nvim_buf_set_var(run.buf, 'mcli_status', result.status)
  vim.api.nvim_buf_set_var(run.buf, 'mcli_exit_code', null_to_nil(result.exit_code) or -1)
  set_state(run, state)
end

local function open_buffer(command, args, cwd)
  buffers_made = buffers_made + 1
  local buf = vim.api.nvim_create_buf(false, true)
  vim.api.nvim_buf_set_name(buf, ('mcli://%d/%s'):format(buffers_made, command))
  vim.bo[buf].filetype = 'mcli'
  local title = vim.tbl_map(vim.fn.shellescape, vim.list_extend({ command }, args))
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, { 'mcli ' .. table.concat(title, ' ') .. ' in ' .. cwd, '', '' })
  vim.bo[buf].modifiable = false
  vim.keymap.set('n', '<C-c>', function()
    M.cancel(buf)
  end, { buffer = buf, desc = 'Cancel the mcli command' })
  vim.api.nvim_create_autocmd('BufWipeout', {
    buffer = buf,
    callback = function()
      M.cancel(buf, true)
      runs_by_buf[buf] = nil
    end,
  })
  vim.cmd(M.config.split)
  local win = vim.api.nvim_get_current_win()
  vim.api.nvim_win_set_buf(win, buf)
  vim.wo[win].statusline = "%f  [%{get(b:,'mcli_state','')}]"
  vim.api.nvim_win_set_cursor(win, { 3, 0 })
  return buf
end

--- Runs `command` with the list of strings `args` in the current directory, its output going to
--- a new split; returns the output buffer.
function M.run(command, args)
  args = args or {}
  local c = connect()
  local cwd = vim.fn.getcwd()
  local buf = open_buffer(command, args, cwd)
  local run = { buf = buf, command = command, conn = c }
  runs_by_buf[buf] = run
  vim.api.nvim_buf_set_var(buf, 'mcli_status', 'running')
  set_state(run, 'running')
  local params = { command = command, args = args, cwd = cwd, timeout = M.config.timeout }
  if M.config.send_env then
    local env = vim.fn.environ()
    params.env = next(env) and env or vim.empty_dict()
  end
  run.id = request(c, 'execute', params, function(err, result)
    finish(run, err, result)
  end)
  c.runs[run.id] = run
  return buf
end

--- Cancels the command of output buffer `buf` (the current one by default).
function M.cancel(buf, quietly)
  buf = (buf == nil or buf == 0) and vim.api.nvim_get_current_buf() or buf
  local run = runs_by_buf[buf]
  if not run or run.done or run.conn.closed then
    if not quietly then
      vim.notify('mcli: no command is running in this buffer', vim.log.levels.WARN)
    end
    return
  end
  notify(run.conn, '$/cancelRequest', { id = run.id })
  if not quietly then
    append(buf, '[mcli] cancelling\n')
  end
end

--- The `:Mcli {cmd} {args}` command.
function M.command(fargs)
  local ok, err = pcall(M.run, fargs[1], vim.list_slice(fargs, 2))
  if not ok then
    vim.notify(tostring(err), vim.log.levels.ERROR)
  end
end

return M
