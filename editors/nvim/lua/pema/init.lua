-- pema for Neovim: a client of `pema lsp` (docs/protocol.md). See :h pema.
--
--   require('pema').setup({ ... })   -- see M.defaults; or vim.lsp.enable('pema') (lsp/pema.lua)
--   :PemaLearn [folder]                   opt a folder in (asks, then writes a minimal .pema.toml)
--   :'<,'>PemaRewrite [gu|fixed|plain|lighter|stronger]   rewrite a range into a preview
--   :PemaAccept / :PemaAcceptHunk / :PemaDiscard / :PemaRetry
--   :PemaStatus / :PemaFiles              what the daemon knows / which files it learns from
--   :PemaExamples [N]                     a few pairs the workspace's style is learned from
--   :'<,'>PemaCompare                     the plain model's rewrite beside the style's
--   :checkhealth pema
--
-- pema attaches only to files under a folder holding a `.pema.toml` (never the home folder or
-- `/`): nothing is learned, and no daemon starts, anywhere else.

local api = vim.api

local M = {}

--- @class pema.Config
M.defaults = {
  --- The command that starts the language server. nil: { server_path or 'pema', 'lsp' }.
  --- @type string[]?
  cmd = nil,
  --- Path of the `pema` binary (used when `cmd` is nil).
  --- @type string?
  server_path = nil,
  --- Mode of rewrites: nil (the mix the workspace's adapter chose on its own held-out
  --- examples), 'gu' (Gradual Unrolling), 'fixed' or 'plain'.
  mode = nil,
  --- Overrides every workspace's λ_max for this editor (nil: the workspace's own).
  --- @type number?
  lambda_max = nil,
  --- Filetypes to attach to; nil attaches to every normal file buffer of an opted-in folder.
  --- @type string[]?
  filetypes = nil,
  --- The workspace root of a file: the nearest folder holding one of these names. A file
  --- under no such folder is not attached to (no daemon starts); the home folder and `/` are
  --- never a root. `.pema.toml` is the opt-in; adding e.g. '.git' opts every repository in.
  root_markers = { '.pema.toml' },
  --- Connect to a running `pema serve` instead of starting `pema lsp`:
  --- { address = '127.0.0.1:7777' | 'unix:/path/to/sock', token = nil, token_file = nil }.
  --- The token defaults to the daemon's own token file ($XDG_CACHE_HOME/pema/serve.token).
  --- @type table?
  connect = nil,
  --- Extra environment for the daemon (e.g. { PEMA_MODEL = '/path/model.gguf' }).
  --- @type table<string,string>?
  cmd_env = nil,
  --- How much the daemon logs to :LspLog: 'error', 'warn', 'info', 'debug' or 'trace' (passed
  --- as PEMA_LOG; nil: the daemon's default, errors only).
  --- @type string?
  log_level = nil,
  --- Options of :PemaRetry (another sample of the same range).
  --- (top_p 0.6: without the cut, 9 of 30 samples lost the source's meaning; BENCHMARKS.md)
  retry = { temperature = 0.8, top_p = 0.6 },
  --- Preview window: maximal width and height.
  preview = { max_width = 80, max_height = 15, border = 'rounded' },
}

--- @type pema.Config?
M.config = nil

local NAME = 'pema'
local TOKEN_PREFIX = 'pema.nvim/rewrite/'
local ns = api.nvim_create_namespace('pema')
local augroup = api.nvim_create_augroup('pema', { clear = true })
local token_seq = 0

-- The one rewrite in flight or in preview (a new one replaces it).
--- @class pema.Pending
--- @field token string
--- @field client vim.lsp.Client
--- @field request_id integer?
--- @field bufnr integer
--- @field src_win integer
--- @field mark integer extmark over the rewritten range
--- @field range lsp.Range
--- @field text string streamed so far, then the final text
--- @field partials integer number of partial results received
--- @field done boolean
--- @field result table?
--- @field preview_buf integer?
--- @field preview_win integer?
--- @type pema.Pending?
M._pending = nil

local function notify(msg, level)
  vim.notify('pema: ' .. msg, level or vim.log.levels.INFO)
end

local function nn(v) -- JSON null → nil
  if v == vim.NIL then
    return nil
  end
  return v
end

---------------------------------------------------------------------------------------------------
-- Server command, root, clients
---------------------------------------------------------------------------------------------------

--- The command line that starts `pema lsp`.
--- @return string[]
function M.cmd()
  local c = M.config or M.defaults
  if c.cmd then
    return c.cmd
  end
  return { c.server_path or 'pema', 'lsp' }
end

local function is_forbidden_root(dir)
  local home = vim.env.HOME and vim.uv.fs_realpath(vim.env.HOME)
  local real = vim.uv.fs_realpath(dir) or dir
  return real == '/' or (home ~= nil and real == home)
end
M._is_forbidden_root = is_forbidden_root

--- The workspace root of a file (see `root_markers`): nil outside every opted-in folder.
--- @param path string|integer absolute file path (or a buffer number)
--- @return string?
function M.find_root(path)
  if type(path) == 'number' then
    path = api.nvim_buf_get_name(path)
  end
  if path == '' or path:match('^%a[%w+.-]*://') then
    return nil
  end
  path = vim.fs.normalize(vim.fn.fnamemodify(path, ':p'))
  local markers = (M.config or M.defaults).root_markers or {}
  local root = vim.fs.root(path, markers)
  if root and not is_forbidden_root(root) then
    return root
  end
  return nil
end

--- The pema client attached to a buffer, else any running pema client.
--- @param bufnr integer?
--- @return vim.lsp.Client?
function M.get_client(bufnr)
  bufnr = bufnr or api.nvim_get_current_buf()
  local c = vim.lsp.get_clients({ bufnr = bufnr, name = NAME })[1]
  return c or vim.lsp.get_clients({ name = NAME })[1]
end

local function is_ours(token)
  return type(token) == 'string' and token:sub(1, #TOKEN_PREFIX) == TOKEN_PREFIX
end

local on_partial -- defined below
local on_status_changed -- defined below

-- `$/progress` for the pema client: partial results of our rewrites go to the preview; every
-- other token (the daemon's work-done progress `pema/<task>/<n>`) goes to the standard handler,
-- so that `LspProgress` and `vim.lsp.status()` keep working.
local function progress_handler(err, params, ctx, config)
  if params and is_ours(params.token) then
    local s = M._pending
    if s and s.token == params.token then
      on_partial(s, params.value)
    end
    return
  end
  local default = vim.lsp.handlers['$/progress']
  if default then
    return default(err, params, ctx, config)
  end
end

-- One daemon serves every workspace: reuse a running client and add the new root to it.
local function reuse_client(client, config)
  if client.name ~= NAME or client:is_stopped() then
    return false
  end
  local root = config.root_dir
  if root then
    local known = false
    for _, f in ipairs(client.workspace_folders or {}) do
      if f.name == root or vim.uri_to_fname(f.uri) == root then
        known = true
        break
      end
    end
    if not known then
      local wf = { { uri = vim.uri_from_fname(root), name = root } }
      client:notify('workspace/didChangeWorkspaceFolders', { event = { added = wf, removed = {} } })
      client.workspace_folders = vim.list_extend(client.workspace_folders or {}, wf)
    end
  end
  return true
end

local missing_reported = false

local function token_of(conn)
  if conn.token then
    return conn.token
  end
  local file = conn.token_file
  if not file then
    local cache = vim.env.XDG_CACHE_HOME
    if not cache or cache == '' then
      cache = vim.fs.joinpath(vim.env.HOME or '~', '.cache')
    end
    file = vim.fs.joinpath(cache, 'pema', 'serve.token')
  end
  local f = io.open(vim.fs.normalize(file), 'r')
  if not f then
    return nil
  end
  local t = vim.trim(f:read('*a') or '')
  f:close()
  return t ~= '' and t or nil
end

--- `cmd` of the LSP config: the command of `pema lsp`, or a connection to a running
--- `pema serve` (config.connect).
local function lsp_cmd(c)
  local conn = c.connect
  if not conn or not conn.address then
    return M.cmd()
  end
  local addr = conn.address
  local connect
  local path = addr:match('^unix:(.+)$')
  if path then
    connect = vim.lsp.rpc.connect(path)
  else
    local host, port = addr:match('^(.*):(%d+)$')
    if not host then
      error(('pema: connect.address %q is neither host:port nor unix:/path'):format(addr))
    end
    connect = vim.lsp.rpc.connect((host:gsub('^%[(.*)%]$', '%1')), tonumber(port))
  end
  -- A refused `initialize` (a wrong or missing token): Neovim 0.11 only raises it in a scheduled
  -- callback and keeps the client, uninitialised, forever. Say why and close the connection.
  return function(dispatchers)
    local rpc = connect(dispatchers)
    local request = rpc.request
    rpc.request = function(method, params, callback, notify_reply)
      if method == 'initialize' and callback then
        local inner = callback
        callback = function(err, result)
          if err then
            vim.schedule(function()
              notify(
                ('the daemon at %s refused this client: %s (its token: connect.token or connect.token_file)'):format(
                  addr,
                  tostring(err.message or err)
                ),
                vim.log.levels.ERROR
              )
              rpc.terminate()
            end)
            return
          end
          return inner(err, result)
        end
      end
      return request(method, params, callback, notify_reply)
    end
    return rpc
  end
end

local function init_options_of(c)
  -- An object even when empty (no mode: the adapter's own choice).
  local o = vim.empty_dict()
  if c.mode then
    o.mode = c.mode
  end
  if c.lambda_max then
    o.lambdaMax = c.lambda_max
  end
  if c.connect and c.connect.address then
    o.token = token_of(c.connect)
  end
  return o
end

local LOG_LEVELS = { error = 'error', warn = 'warn', info = 'warn,pema=info', debug = 'warn,pema=debug', trace = 'warn,pema=trace' }

--- The daemon's environment: config.cmd_env, plus PEMA_LOG from config.log_level.
--- @param c pema.Config
--- @return table<string,string>?
function M.cmd_env(c)
  local level = c.log_level and LOG_LEVELS[c.log_level]
  if c.log_level and not level then
    notify(('log_level %q is none of error, warn, info, debug, trace'):format(tostring(c.log_level)), vim.log.levels.WARN)
  end
  if not level then
    return c.cmd_env
  end
  return vim.tbl_extend('force', c.cmd_env or {}, { PEMA_LOG = level })
end

--- The configuration of the `pema` language server (vim.lsp.Config), as `lsp/pema.lua` and
--- setup() give it to vim.lsp.config(). It attaches only to file buffers under an opted-in
--- folder (`root_markers`, never home or `/`).
--- @param c pema.Config?
--- @return vim.lsp.Config
function M.lsp_config(c)
  c = c or M.config or M.defaults
  local cmd = lsp_cmd(c)
  return {
    cmd = cmd,
    cmd_env = M.cmd_env(c),
    filetypes = c.filetypes,
    workspace_required = true,
    root_dir = function(bufnr, on_dir)
      local root = M.find_root(bufnr)
      if not root then
        return
      end
      if type(cmd) == 'table' and vim.fn.executable(cmd[1]) ~= 1 then
        if not missing_reported then
          missing_reported = true
          notify(
            ('cannot start the daemon: %q is not an executable (install pema, or set server_path/cmd in setup(); see :checkhealth pema)'):format(
              cmd[1]
            ),
            vim.log.levels.ERROR
          )
        end
        return
      end
      on_dir(root)
    end,
    init_options = init_options_of(c),
    handlers = {
      ['$/progress'] = progress_handler,
      ['pema/statusChanged'] = function(_, params)
        on_status_changed(params)
      end,
    },
    reuse_client = reuse_client,
    on_exit = function(code, signal)
      if code ~= 0 and signal == 0 then
        vim.schedule(function()
          notify(
            ('the daemon (%s) exited with code %d; see :LspLog and :checkhealth pema'):format(
              type(cmd) == 'table' and table.concat(cmd, ' ') or 'pema serve',
              code
            ),
            vim.log.levels.ERROR
          )
        end)
      end
    end,
  }
end

--- Attach the daemon to a buffer now (as vim.lsp.enable('pema') does on FileType), when the
--- buffer is a file under an opted-in folder.
--- @param bufnr integer?
--- @return integer? client_id
function M.attach(bufnr)
  bufnr = bufnr or api.nvim_get_current_buf()
  if not api.nvim_buf_is_valid(bufnr) or vim.bo[bufnr].buftype ~= '' then
    return
  end
  local cfg = vim.lsp.config.pema
  if not cfg then
    return
  end
  if cfg.filetypes and not vim.tbl_contains(cfg.filetypes, vim.bo[bufnr].filetype) then
    return
  end
  local root
  cfg.root_dir(bufnr, function(r)
    root = r
  end)
  if not root then
    return
  end
  cfg = vim.deepcopy(cfg)
  cfg.root_dir = root
  cfg.name = NAME
  return vim.lsp.start(cfg, { bufnr = bufnr, reuse_client = cfg.reuse_client })
end

---------------------------------------------------------------------------------------------------
-- Opt-in: "learn this folder's style"
---------------------------------------------------------------------------------------------------

--- Asks the user; replaced in tests.
--- @param question string
--- @return boolean
function M._confirm(question)
  return vim.fn.confirm(question, '&Yes\n&No', 2) == 1
end

local MINIMAL_CONFIG = [[
# pema learns the writing style of this folder (prose files and *.pairs.jsonl under it).
# Every setting is optional; see `pema config --help` or docs/protocol.md. Delete this file
# to stop learning here (the learned memory stays in pema's cache until you remove it).
]]

--- Opt a folder in: asks, then writes a minimal `.pema.toml` there and attaches the daemon to
--- the loaded buffers under it. Never the home folder or `/`.
--- @param dir string? default: the current file's opted-in root, else its folder, else the cwd
--- @return string? root
function M.learn(dir)
  if not dir or dir == '' then
    local name = api.nvim_buf_get_name(0)
    if name ~= '' and not name:match('^%a[%w+.-]*://') then
      dir = M.find_root(name) or vim.fs.dirname(vim.fn.fnamemodify(name, ':p'))
    else
      dir = vim.fn.getcwd()
    end
  end
  dir = vim.fs.normalize(vim.fn.fnamemodify(dir, ':p'))
  if dir ~= '/' then
    dir = dir:gsub('/$', '')
  end
  if vim.fn.isdirectory(dir) ~= 1 then
    notify(('%s is not a folder'):format(dir), vim.log.levels.ERROR)
    return nil
  end
  if is_forbidden_root(dir) then
    notify(
      ('%s cannot be a workspace: learn the folder of your documents, not %s'):format(
        dir,
        dir == '/' and 'the root of the file system' or 'your whole home folder'
      ),
      vim.log.levels.ERROR
    )
    return nil
  end
  local file = vim.fs.joinpath(dir, '.pema.toml')
  if not vim.uv.fs_stat(file) then
    local q = ('pema: learn the writing style of %s?\n\nThis writes a minimal .pema.toml there; pema then reads the prose files under it (:PemaFiles lists them).'):format(
      dir
    )
    if not M._confirm(q) then
      notify('nothing written: ' .. dir .. ' is not learned')
      return nil
    end
    local tmp = file .. '.tmp' .. vim.uv.os_getpid()
    local f, err = io.open(tmp, 'w')
    if not f then
      notify(('cannot write %s: %s'):format(file, err), vim.log.levels.ERROR)
      return nil
    end
    f:write(MINIMAL_CONFIG)
    f:close()
    local ok, rerr = vim.uv.fs_rename(tmp, file)
    if not ok then
      os.remove(tmp)
      notify(('cannot write %s: %s'):format(file, rerr), vim.log.levels.ERROR)
      return nil
    end
    notify(('learning %s (wrote %s)'):format(dir, file))
  end
  for _, b in ipairs(api.nvim_list_bufs()) do
    if api.nvim_buf_is_loaded(b) then
      local n = api.nvim_buf_get_name(b)
      if n ~= '' and vim.fs.normalize(vim.fn.fnamemodify(n, ':p')):sub(1, #dir + 1) == dir .. '/' then
        M.attach(b)
      end
    end
  end
  return dir
end

---------------------------------------------------------------------------------------------------
-- Rewrite: request, streaming preview, accept / discard
---------------------------------------------------------------------------------------------------

-- The byte range (0-based rows, end-exclusive byte columns) of a command's range.
local function byte_range(bufnr, line1, line2)
  local last = api.nvim_buf_get_lines(bufnr, line2 - 1, line2, true)[1]
  local sr, sc, er, ec = line1 - 1, 0, line2 - 1, #last
  -- A characterwise visual selection on exactly these lines: its columns.
  local vs = api.nvim_buf_get_mark(bufnr, '<')
  local ve = api.nvim_buf_get_mark(bufnr, '>')
  if vim.fn.visualmode() == 'v' and vs[1] == line1 and ve[1] == line2 then
    local first = api.nvim_buf_get_lines(bufnr, line1 - 1, line1, true)[1]
    sc = math.min(vs[2], #first)
    if ve[2] < #last then
      -- '> points at the first byte of the last character: include the whole character
      ec = ve[2] + 1 + vim.str_utf_end(last, ve[2] + 1)
      if vim.o.selection == 'exclusive' then
        ec = ve[2]
      end
    end
  end
  return sr, sc, er, ec
end

-- LSP range of a byte range, in the client's position encoding (UTF-16 by default).
local function lsp_range(bufnr, sr, sc, er, ec, encoding)
  local function pos(row, col)
    local line = api.nvim_buf_get_lines(bufnr, row, row + 1, true)[1]
    return { line = row, character = vim.str_utfindex(line, encoding, math.min(col, #line), false) }
  end
  return { start = pos(sr, sc), ['end'] = pos(er, ec) }
end

local function hl_defaults()
  api.nvim_set_hl(0, 'PemaRange', { link = 'Visual', default = true })
  api.nvim_set_hl(0, 'PemaPreview', { link = 'NormalFloat', default = true })
  api.nvim_set_hl(0, 'PemaPreviewTitle', { link = 'FloatTitle', default = true })
end

local function preview_size(s, lines)
  local p = (M.config or M.defaults).preview
  local src_width = api.nvim_win_is_valid(s.src_win) and api.nvim_win_get_width(s.src_win)
    or vim.o.columns
  local width = math.max(20, math.min(p.max_width, src_width - 4, vim.o.columns - 4))
  local height = 0
  for _, l in ipairs(lines) do
    height = height + math.max(1, math.ceil(vim.fn.strdisplaywidth(l) / width))
  end
  return width, math.max(1, math.min(p.max_height, height))
end

local function preview_title(s)
  if s.done and s.result then
    local r = s.result
    return (' pema · %s · %d tokens · %.1f s '):format(r.mode or '?', r.tokens or 0, r.seconds or 0)
  end
  return ' pema · rewriting… '
end

--- A rewrite's text as buffer lines. The daemon fits a rewrite to the document's line endings
--- (CRLF in a 'fileformat' dos buffer, whose lines hold no "\r").
local function lines_of(text)
  return vim.split((text:gsub('\r\n', '\n')), '\n', { plain = true })
end

local function update_preview(s)
  if not (s.preview_buf and api.nvim_buf_is_valid(s.preview_buf)) then
    return
  end
  local lines = lines_of(s.text ~= '' and s.text or '…')
  vim.bo[s.preview_buf].modifiable = true
  api.nvim_buf_set_lines(s.preview_buf, 0, -1, false, lines)
  vim.bo[s.preview_buf].modifiable = false
  if s.preview_win and api.nvim_win_is_valid(s.preview_win) then
    local width, height = preview_size(s, lines)
    api.nvim_win_set_config(s.preview_win, {
      width = width,
      height = height,
      title = preview_title(s),
      title_pos = 'left',
    })
  end
end

local function close_pending(s)
  if M._pending == s then
    M._pending = nil
  end
  if api.nvim_buf_is_valid(s.bufnr) then
    pcall(api.nvim_buf_del_extmark, s.bufnr, ns, s.mark)
  end
  local win = s.preview_win
  s.preview_win = nil
  if win and api.nvim_win_is_valid(win) then
    pcall(api.nvim_win_close, win, true)
  end
  if s.preview_buf and api.nvim_buf_is_valid(s.preview_buf) then
    pcall(api.nvim_buf_delete, s.preview_buf, { force = true })
  end
  if api.nvim_win_is_valid(s.src_win) then
    pcall(api.nvim_set_current_win, s.src_win)
  end
end

local function open_preview(s)
  local buf = api.nvim_create_buf(false, true)
  vim.bo[buf].bufhidden = 'wipe'
  vim.bo[buf].filetype = 'pema-preview'
  s.preview_buf = buf
  local width, height = preview_size(s, { '…' })
  local p = (M.config or M.defaults).preview
  -- just below the last line of the range, however many screen lines it wraps to
  local below = 1
  pcall(function()
    local er = s.range['end'].line
    below = api.nvim_win_text_height(s.src_win, { start_row = er, end_row = er }).all
  end)
  local win = api.nvim_open_win(buf, true, {
    relative = 'win',
    win = s.src_win,
    bufpos = { s.range['end'].line, 0 },
    row = below,
    col = 0,
    width = width,
    height = height,
    style = 'minimal',
    border = p.border,
    title = preview_title(s),
    title_pos = 'left',
    footer = ' <CR> accept · a this line · r retry · q discard ',
    footer_pos = 'right',
  })
  s.preview_win = win
  vim.wo[win].wrap = true
  vim.wo[win].linebreak = true
  vim.wo[win].winhighlight = 'NormalFloat:PemaPreview,FloatTitle:PemaPreviewTitle'
  local o = { buffer = buf, nowait = true, silent = true }
  vim.keymap.set('n', '<CR>', M.accept, vim.tbl_extend('force', o, { desc = 'pema: accept the rewrite' }))
  vim.keymap.set('n', 'q', M.discard, vim.tbl_extend('force', o, { desc = 'pema: discard the rewrite' }))
  vim.keymap.set('n', 'a', function()
    M.accept_hunk()
  end, vim.tbl_extend('force', o, { desc = 'pema: accept the line (hunk) under the cursor' }))
  vim.keymap.set('n', 'r', function()
    M.retry()
  end, vim.tbl_extend('force', o, { desc = 'pema: another sample of the rewrite' }))
  vim.keymap.set('n', '<Esc>', M.discard, vim.tbl_extend('force', o, { desc = 'pema: discard the rewrite' }))
  api.nvim_create_autocmd('WinClosed', {
    group = augroup,
    pattern = tostring(win),
    once = true,
    callback = function()
      if M._pending == s and s.preview_win then
        s.preview_win = nil
        vim.schedule(function()
          M.discard()
        end)
      end
    end,
  })
  update_preview(s)
end

on_partial = function(s, value)
  if type(value) ~= 'table' or s.done then
    return
  end
  s.partials = s.partials + 1
  if type(value.text) == 'string' then
    s.text = value.text
  elseif type(value.delta) == 'string' then
    s.text = s.text .. value.delta
  end
  update_preview(s)
end

--- Strength presets of :PemaRewrite: they map to the daemon's mixing options (per request, no
--- restart). `lighter`: a constant, small weight on the learned style; `stronger`: a constant,
--- large one.
M.presets = {
  lighter = { mode = 'fixed', options = { lambdaFixed = 0.3 } },
  stronger = { mode = 'fixed', options = { lambdaFixed = 0.9 } },
}

--- What a rewrite request carries: the given mode and options (a preset's, a retry's) first,
--- then the config as it is now (setup() may have changed mode or lambda_max since the daemon
--- started), so that no restart is needed.
--- @return string? mode, table? options
local function request_choice(mode, options)
  local c = M.config or M.defaults
  if c.lambda_max and not (options and options.lambdaMax) then
    options = vim.tbl_extend('force', { lambdaMax = c.lambda_max }, options or {})
  end
  return mode or c.mode, options
end

--- Rewrite a range of the current buffer in its workspace's style.
--- @param opts { line1: integer?, line2: integer?, bytes: integer[]?, mode: string?, options: table? }?
function M.rewrite(opts)
  opts = vim.deepcopy(opts or {})
  local preset = opts.mode and M.presets[opts.mode]
  if preset then
    opts.mode = preset.mode
    opts.options = vim.tbl_extend('force', preset.options, opts.options or {})
  end
  opts.mode, opts.options = request_choice(opts.mode, opts.options)
  local bufnr = api.nvim_get_current_buf()
  local client = vim.lsp.get_clients({ bufnr = bufnr, name = NAME })[1]
  if not client then
    local cmd = M.cmd()
    if not M.find_root(bufnr) then
      notify(
        "this file is not in a folder pema learns: :PemaLearn opts its folder in (it asks, then writes a .pema.toml)",
        vim.log.levels.ERROR
      )
    elseif not (M.config and M.config.connect) and vim.fn.executable(cmd[1]) ~= 1 then
      notify(('the daemon binary %q was not found (see :checkhealth pema)'):format(cmd[1]), vim.log.levels.ERROR)
    else
      notify("no pema daemon is attached to this buffer (call require('pema').setup() or vim.lsp.enable('pema'))", vim.log.levels.ERROR)
    end
    return
  end
  local sr, sc, er, ec
  if opts.bytes then
    sr, sc, er, ec = unpack(opts.bytes)
  else
    local line1 = opts.line1 or api.nvim_win_get_cursor(0)[1]
    local line2 = opts.line2 or line1
    sr, sc, er, ec = byte_range(bufnr, line1, line2)
  end
  local range = lsp_range(bufnr, sr, sc, er, ec, client.offset_encoding or 'utf-16')

  -- A new request replaces (and cancels) the previous one.
  M.discard({ quiet = true })

  token_seq = token_seq + 1
  local s = {
    token = TOKEN_PREFIX .. token_seq,
    client = client,
    bufnr = bufnr,
    src_win = api.nvim_get_current_win(),
    range = range,
    text = '',
    partials = 0,
    done = false,
    mode = opts.mode,
    options = opts.options,
    accepted = {},
  }
  hl_defaults()
  s.mark = api.nvim_buf_set_extmark(bufnr, ns, sr, sc, {
    end_row = er,
    end_col = ec,
    right_gravity = false,
    end_right_gravity = true,
    hl_group = 'PemaRange',
  })
  M._pending = s

  local params = {
    uri = vim.uri_from_bufnr(bufnr),
    range = range,
    mode = opts.mode,
    options = opts.options,
    partialResultToken = s.token,
  }
  local ok, id = client:request('pema/rewrite', params, function(err, result)
    if M._pending ~= s then
      return -- cancelled or replaced
    end
    s.request_id = nil
    if err then
      close_pending(s)
      if err.code == -32800 then
        return
      end
      local msg = 'rewrite failed: ' .. tostring(err.message)
      if err.code == -32803 then
        msg = msg .. ' (:PemaStatus shows what is being learned; `:PemaRewrite plain` works without it)'
      end
      notify(msg, vim.log.levels.ERROR)
      return
    end
    s.done = true
    s.result = result
    s.text = result.text
    update_preview(s)
    api.nvim_exec_autocmds('User', { pattern = 'PemaRewriteDone', modeline = false, data = result })
  end, bufnr)
  if not ok then
    close_pending(s)
    notify('could not send the rewrite: the daemon is not running', vim.log.levels.ERROR)
    return
  end
  s.request_id = id
  open_preview(s)
  return s
end

local hunk_ns = api.nvim_create_namespace('pema.hunks')

--- The rewritten range's byte positions now (it follows edits), or nil when it is gone.
local function pending_bytes(s)
  if not api.nvim_buf_is_valid(s.bufnr) then
    return nil
  end
  local m = api.nvim_buf_get_extmark_by_id(s.bufnr, ns, s.mark, { details = true })
  if not m[1] then
    return nil
  end
  return { m[1], m[2], m[3].end_row, m[3].end_col }
end

--- Replace the range with the finished rewrite.
--- @return boolean accepted
function M.accept()
  local s = M._pending
  if not s then
    notify('no rewrite to accept', vim.log.levels.WARN)
    return false
  end
  if not s.done then
    notify('the rewrite is still being generated (wait, or :PemaDiscard)', vim.log.levels.WARN)
    return false
  end
  if not api.nvim_buf_is_valid(s.bufnr) then
    close_pending(s)
    return false
  end
  local m = api.nvim_buf_get_extmark_by_id(s.bufnr, ns, s.mark, { details = true })
  if not m[1] then
    close_pending(s)
    notify('the rewritten range is gone', vim.log.levels.WARN)
    return false
  end
  local sr, sc, er, ec = m[1], m[2], m[3].end_row, m[3].end_col
  local lines = lines_of(s.text)
  close_pending(s)
  api.nvim_buf_set_text(s.bufnr, sr, sc, er, ec, lines)
  return true
end

--- Close the preview (cancelling the request if it still runs).
--- @param opts { quiet: boolean? }?
function M.discard(opts)
  local s = M._pending
  if not s then
    if not (opts and opts.quiet) then
      notify('no rewrite to discard', vim.log.levels.WARN)
    end
    return
  end
  if s.request_id and not s.done then
    pcall(s.client.cancel_request, s.client, s.request_id)
  end
  M._last = { bufnr = s.bufnr, bytes = pending_bytes(s), mode = s.mode, options = s.options, win = s.src_win }
  close_pending(s)
end

--- Accept one hunk of the finished rewrite: its line `n` (default: the preview line under the
--- cursor) replaces the same line of the range; the other lines stay as they are, and the
--- preview stays open for them. (Rewrites of several lines are made line by line, so line n of
--- the rewrite is the rewrite of line n of the range.)
--- @param n integer?
--- @return boolean accepted
function M.accept_hunk(n)
  local s = M._pending
  if not s then
    notify('no rewrite to accept', vim.log.levels.WARN)
    return false
  end
  if not s.done then
    notify('the rewrite is still being generated (wait, or :PemaDiscard)', vim.log.levels.WARN)
    return false
  end
  if not n then
    if s.preview_win and api.nvim_get_current_win() == s.preview_win then
      n = api.nvim_win_get_cursor(s.preview_win)[1]
    else
      n = 1
    end
  end
  local b = pending_bytes(s)
  if not b then
    close_pending(s)
    notify('the rewritten range is gone', vim.log.levels.WARN)
    return false
  end
  local sr, sc, er, ec = unpack(b)
  local new = lines_of(s.text)
  if #new ~= er - sr + 1 then
    notify(('this rewrite has %d lines for %d lines of text: accept it whole (:PemaAccept)'):format(#new, er - sr + 1), vim.log.levels.WARN)
    return false
  end
  if n < 1 or n > #new then
    notify(('no line %d in this rewrite'):format(n), vim.log.levels.WARN)
    return false
  end
  local row = sr + n - 1
  local line = api.nvim_buf_get_lines(s.bufnr, row, row + 1, true)[1]
  local c0 = n == 1 and sc or 0
  local c1 = row == er and ec or #line
  api.nvim_buf_set_text(s.bufnr, row, c0, row, c1, { new[n] })
  s.accepted[n] = true
  if s.preview_buf and api.nvim_buf_is_valid(s.preview_buf) then
    api.nvim_buf_set_extmark(s.preview_buf, hunk_ns, n - 1, 0, {
      sign_text = '✓',
      virt_text = { { ' accepted', 'Comment' } },
      virt_text_pos = 'eol',
    })
  end
  -- Every line now reads as the rewrite: nothing is left to accept.
  local nb = pending_bytes(s)
  if nb and table.concat(api.nvim_buf_get_text(s.bufnr, nb[1], nb[2], nb[3], nb[4], {}), '\n') == s.text then
    close_pending(s)
  end
  return true
end

--- Another sample of the same range (sampling with config.retry.temperature and a new seed),
--- keeping the mode and options of the rewrite in preview (or of the last one discarded).
--- @return pema.Pending?
function M.retry()
  local s = M._pending
  local last = s and { bufnr = s.bufnr, bytes = pending_bytes(s), mode = s.mode, options = s.options, win = s.src_win }
    or M._last
  if not last or not last.bytes or not api.nvim_buf_is_valid(last.bufnr) then
    notify('nothing to retry: rewrite a range first', vim.log.levels.WARN)
    return nil
  end
  local retry = (M.config or M.defaults).retry or {}
  local options = vim.tbl_extend('force', last.options or {}, {
    temperature = retry.temperature or 0.8,
    topP = retry.top_p,
    seed = math.random(1, 2 ^ 31 - 1),
  })
  if last.win and api.nvim_win_is_valid(last.win) then
    api.nvim_set_current_win(last.win)
  end
  if api.nvim_get_current_buf() ~= last.bufnr then
    api.nvim_set_current_buf(last.bufnr)
  end
  return M.rewrite({ bytes = last.bytes, mode = last.mode, options = options })
end

M._byte_range = byte_range
M._lsp_range = lsp_range

---------------------------------------------------------------------------------------------------
-- Status
---------------------------------------------------------------------------------------------------

local function fmt_num(v)
  v = nn(v)
  if v == nil then
    return '-'
  end
  if type(v) == 'number' and v ~= math.floor(v) then
    return ('%.3f'):format(v)
  end
  return tostring(v)
end

local function fmt_any(v)
  v = nn(v)
  if v == nil then
    return '-'
  end
  if type(v) == 'table' then
    if vim.tbl_isempty(v) then
      return '-'
    end
    return vim.inspect(v, { newline = ' ', indent = '' })
  end
  return tostring(v)
end

--- Readable lines of a `pema/status` result.
--- @param st table
--- @return string[]
function M.format_status(st)
  local L = {}
  local function add(fmt, ...)
    L[#L + 1] = select('#', ...) > 0 and fmt:format(...) or fmt
  end
  local up = nn(st.uptimeSeconds)
  add('pema %s · model %s · up %s s', fmt_any(st.version), fmt_any(st.model), type(up) == 'number' and ('%.0f'):format(up) or '-')
  local q = nn(st.queue) or {}
  add(
    'queue: %s rewrites waiting · background waiting: %s · busy: %s',
    fmt_num(q.rewritesWaiting),
    fmt_any(q.backgroundWaiting),
    fmt_any(q.busy)
  )
  local wss = nn(st.workspaces) or {}
  if #wss == 0 then
    add('')
    add('no workspace is open')
  end
  for _, w in ipairs(wss) do
    add('')
    add('%s', fmt_any(w.root))
    add('  state dir    %s', fmt_any(w.stateDir))
    add(
      '  files        %s (%s corpus, %s pairs files), %s read so far',
      fmt_num(w.files),
      fmt_num(w.corpusFiles),
      fmt_num(w.pairsFiles),
      fmt_num(w.filesRead)
    )
    add(
      '  units        %s (%s paraphrased, %s pending) · pairs %s',
      fmt_num(w.units),
      fmt_num(w.unitsParaphrased),
      fmt_num(w.unitsPending),
      fmt_num(w.pairs)
    )
    local m = nn(w.memory) or {}
    add('  memory       %s entries, %s pairs, %s builds', fmt_num(m.entries), fmt_num(m.pairs), fmt_num(m.builds))
    local a = nn(w.adapter) or {}
    local flags = {}
    if nn(a.available) ~= nil then
      flags[#flags + 1] = a.available and 'available' or 'not available'
    end
    if a.stale == true then
      flags[#flags + 1] = 'stale (a new one is training)'
    end
    add(
      '  adapter      %s%s · held-out loss %s (CE %s) · %s trainings',
      fmt_any(a.state),
      #flags > 0 and (' (' .. table.concat(flags, ', ') .. ')') or '',
      fmt_num(a.heldOutLoss),
      fmt_num(a.heldOutCe),
      fmt_num(a.trainings)
    )
    local lr = nn(w.lastRefresh)
    if lr then
      add(
        '  last refresh %s read, %s removed, %s unchanged%s',
        fmt_num(lr.filesRead),
        fmt_num(lr.filesRemoved),
        fmt_num(lr.filesUnchanged),
        lr.configReloaded == true and ', config reloaded' or ''
      )
    end
    local skipped = nn(w.skipped) or {}
    add('  skipped      %d file(s)', #skipped)
    for _, sk in ipairs(skipped) do
      add('    %s: %s', fmt_any(sk.path), fmt_any(sk.reason))
    end
    local errors = nn(w.errors) or {}
    add('  errors       %s', #errors == 0 and 'none' or tostring(#errors))
    for _, e in ipairs(errors) do
      add('    %s', type(e) == 'table' and fmt_any(e.message or e) or tostring(e))
    end
    if nn(w.configError) then
      add('  config error %s', fmt_any(w.configError))
    end
  end
  return L
end

--- Ask the daemon for its status.
--- @param cb fun(err: table?, result: table?)
--- @param workspace string?
function M.request_status(cb, workspace)
  local client = M.get_client()
  if not client then
    cb({ message = 'no pema daemon is running (open a file inside a workspace after setup())' })
    return
  end
  client:request('pema/status', workspace and { workspace = workspace } or vim.empty_dict(), function(err, result)
    cb(err, result)
  end)
end

local function float(lines, title, filetype)
  local buf = api.nvim_create_buf(false, true)
  vim.bo[buf].bufhidden = 'wipe'
  api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.bo[buf].modifiable = false
  vim.bo[buf].filetype = filetype
  local width = 20
  for _, l in ipairs(lines) do
    width = math.max(width, vim.fn.strdisplaywidth(l))
  end
  width = math.min(width, vim.o.columns - 4)
  local height = math.min(#lines, math.max(1, vim.o.lines - 6))
  local win = api.nvim_open_win(buf, true, {
    relative = 'editor',
    row = math.floor((vim.o.lines - height) / 2) - 1,
    col = math.floor((vim.o.columns - width) / 2),
    width = width,
    height = height,
    style = 'minimal',
    border = 'rounded',
    title = title,
    footer = ' q close ',
    footer_pos = 'right',
  })
  vim.wo[win].wrap = false
  for _, k in ipairs({ 'q', '<Esc>' }) do
    vim.keymap.set('n', k, function()
      pcall(api.nvim_win_close, win, true)
    end, { buffer = buf, nowait = true, silent = true })
  end
  return buf, win
end

--- :PemaStatus — the status in a scratch float (q closes it).
function M.status()
  M.request_status(function(err, result)
    if err then
      notify('status: ' .. tostring(err.message), vim.log.levels.ERROR)
      return
    end
    float(M.format_status(result), ' pema status ', 'pema-status')
  end)
end

---------------------------------------------------------------------------------------------------
-- Files: what a workspace learns from
---------------------------------------------------------------------------------------------------

--- Readable lines of a `pema/files` result.
--- @param r table
--- @return string[]
function M.format_files(r)
  local L = {}
  local root = tostring(nn(r.root) or '?')
  local function rel(p)
    p = tostring(p)
    if p:sub(1, #root + 1) == root .. '/' then
      return p:sub(#root + 2)
    end
    return p
  end
  local learned, waiting, skipped = nn(r.learned) or {}, nn(r.waiting) or {}, nn(r.skipped) or {}
  L[#L + 1] = ('%s: learns from %d file(s), %d waiting, %d skipped'):format(root, #learned, #waiting, #skipped)
  L[#L + 1] = ''
  L[#L + 1] = 'learned from:'
  for _, f in ipairs(learned) do
    local what = f.kind == 'pairs' and ('%d pairs'):format(f.pairs or 0) or ('%d units'):format(f.units or 0)
    if (f.badLines or 0) > 0 then
      what = what .. (', %d bad lines'):format(f.badLines)
    end
    L[#L + 1] = ('  %s  (%s, %s)'):format(rel(f.path), tostring(f.kind), what)
  end
  if #waiting > 0 then
    L[#L + 1] = ''
    L[#L + 1] = 'not read yet:'
    for _, p in ipairs(waiting) do
      L[#L + 1] = '  ' .. rel(p)
    end
  end
  L[#L + 1] = ''
  L[#L + 1] = 'skipped:'
  for _, f in ipairs(skipped) do
    L[#L + 1] = ('  %s: %s'):format(rel(f.path), tostring(f.reason))
  end
  if r.truncated == true then
    L[#L + 1] = '… (more entries than the listing shows)'
  end
  return L
end

--- The daemon attached to `bufnr`, or nil after saying how to get one.
local function client_or_say(bufnr)
  local client = M.get_client(bufnr)
  if not client then
    notify('no pema daemon is running: open a file in a folder with a .pema.toml, or :PemaLearn', vim.log.levels.ERROR)
  end
  return client
end

--- :PemaFiles — which files the current file's workspace learns from, and why not the others.
function M.files()
  local bufnr = api.nvim_get_current_buf()
  local client = client_or_say(bufnr)
  if not client then
    return
  end
  local root = M.find_root(bufnr)
  local params = root and { workspace = root } or vim.empty_dict()
  client:request('pema/files', params, function(err, result)
    if err then
      notify('files: ' .. tostring(err.message), vim.log.levels.ERROR)
      return
    end
    float(M.format_files(result), ' pema files ', 'pema-files')
  end, bufnr)
end

---------------------------------------------------------------------------------------------------
-- Examples: what the style is learned from
---------------------------------------------------------------------------------------------------

--- Readable lines of a `pema/examples` result.
--- @param root string
--- @param r table
--- @return string[]
function M.format_examples(root, r)
  local examples = nn(r.examples) or {}
  local L = { ('%s: %d pair(s) the style is learned from'):format(root, #examples) }
  if #examples == 0 then
    L[#L + 1] = ''
    L[#L + 1] = 'No pairs yet: pema is still reading and paraphrasing this folder (:PemaStatus).'
    return L
  end
  L[#L + 1] = 'pseudo: a sentence of your prose, with a plain paraphrase pema made of it as its source'
  for i, e in ipairs(examples) do
    L[#L + 1] = ''
    L[#L + 1] = ('%d. %s'):format(i, e.pseudo == true and 'pseudo-pair' or 'pair (pairs file)')
    for _, l in ipairs(vim.split(tostring(e.source), '\n', { plain = true })) do
      L[#L + 1] = '   ' .. l
    end
    for j, l in ipairs(vim.split(tostring(e.target), '\n', { plain = true })) do
      L[#L + 1] = (j == 1 and ' → ' or '   ') .. l
    end
  end
  return L
end

--- :PemaExamples [N] — a few pairs (or pseudo-pairs) the memory of the current file's workspace
--- learns from, source → target, in a scratch buffer (q closes it).
--- @param limit integer? default 10 (at most 50)
function M.examples(limit)
  local bufnr = api.nvim_get_current_buf()
  local client = client_or_say(bufnr)
  if not client then
    return
  end
  local root = M.find_root(bufnr)
  local params = { limit = limit or 10 }
  if root then
    params.workspace = root
  end
  client:request('pema/examples', params, function(err, result)
    if err then
      notify('examples: ' .. tostring(err.message), vim.log.levels.ERROR)
      return
    end
    local _, win = float(M.format_examples(root or '?', result), ' pema: what was learned ', 'pema-examples')
    vim.wo[win].wrap = true
    vim.wo[win].linebreak = true
  end, bufnr)
end

--- The lines of a :PemaCompare window.
--- @param source string
--- @param runs { label: string, text: string }[]
--- @return string[]
function M.format_compare(source, runs)
  local L = {}
  local function block(label, text)
    for j, l in ipairs(lines_of(text ~= '' and text or '(nothing)')) do
      L[#L + 1] = (j == 1 and ('%-12s '):format(label .. ':') or (' '):rep(13)) .. l
    end
  end
  block('source', source)
  for _, r in ipairs(runs) do
    block(r.label, r.text)
  end
  return L
end

--- :'<,'>PemaCompare — the range rewritten by the plain model and with the workspace's style
--- (config.mode), one under the other, as `pema rewrite --compare` prints them. Fires
--- `User PemaCompareDone` with { source, plain, pema }.
--- @param opts { line1: integer?, line2: integer? }?
function M.compare(opts)
  opts = opts or {}
  local bufnr = api.nvim_get_current_buf()
  local client = client_or_say(bufnr)
  if not client then
    return
  end
  local line1 = opts.line1 or api.nvim_win_get_cursor(0)[1]
  local sr, sc, er, ec = byte_range(bufnr, line1, opts.line2 or line1)
  local range = lsp_range(bufnr, sr, sc, er, ec, client.offset_encoding or 'utf-16')
  local source = table.concat(api.nvim_buf_get_text(bufnr, sr, sc, er, ec, {}), '\n')
  local mode, options = request_choice(nil, nil)
  local runs = { { label = 'plain', mode = 'plain' }, { label = 'pema', mode = mode, options = options } }
  local function run(i)
    if i > #runs then
      float(M.format_compare(source, runs), ' pema: plain model ↔ style ', 'pema-compare')
      api.nvim_exec_autocmds('User', {
        pattern = 'PemaCompareDone',
        modeline = false,
        data = { source = source, plain = runs[1].text, pema = runs[2].text },
      })
      return
    end
    local params = { uri = vim.uri_from_bufnr(bufnr), range = range, mode = runs[i].mode, options = runs[i].options }
    client:request('pema/rewrite', params, function(err, result)
      if err then
        notify('compare: ' .. tostring(err.message), vim.log.levels.ERROR)
        return
      end
      runs[i].text = result.text
      run(i + 1)
    end, bufnr)
  end
  notify('comparing the plain model with the style…')
  run(1)
end

---------------------------------------------------------------------------------------------------
-- Statusline: the daemon's background work, and each workspace's state as the daemon pushes it
-- (`pema/statusChanged`); no echo in the message area
---------------------------------------------------------------------------------------------------

M._progress = {}
--- The last `pema/statusChanged` of each workspace, by root.
M._status = {}

on_status_changed = function(params)
  if type(params) ~= 'table' or type(params.root) ~= 'string' then
    return
  end
  M._status[params.root] = params
  vim.schedule(function()
    api.nvim_exec_autocmds('User', { pattern = 'PemaStatusChanged', modeline = false, data = params })
    -- Only with a UI: a headless Neovim has no status lines to draw.
    if #api.nvim_list_uis() > 0 then
      pcall(vim.cmd.redrawstatus)
    end
  end)
end

function M._track_progress()
  api.nvim_create_autocmd('LspProgress', {
    group = augroup,
    callback = function(ev)
      local client = vim.lsp.get_client_by_id(ev.data.client_id)
      local p = ev.data.params or {}
      local v = p.value
      if not client or client.name ~= NAME or type(v) ~= 'table' or not v.kind then
        return
      end
      if v.kind == 'end' then
        M._progress[p.token] = nil
      else
        local cur = M._progress[p.token] or {}
        M._progress[p.token] = {
          title = v.title or cur.title or 'pema',
          message = v.message or cur.message,
          percentage = v.percentage or cur.percentage,
        }
      end
    end,
  })
end

--- The status-line text of one workspace's pushed status, e.g. `pema: ready · 1650 entries`.
--- @param st table a `pema/statusChanged`
--- @return string
function M.format_state(st)
  if nn(st.configError) then
    return 'pema: config error'
  end
  local a = nn(st.adapter) or {}
  local m = nn(st.memory) or {}
  local entries = type(nn(m.entries)) == 'number' and (' · %d entries'):format(m.entries) or ''
  local state = nn(a.state) or 'none'
  if state == 'ready' then
    return a.stale == true and ('pema: ready (retraining)' .. entries) or ('pema: ready' .. entries)
  elseif state == 'training' then
    return a.available == true and ('pema: ready (training)' .. entries) or 'pema: training'
  elseif state == 'building' then
    local pending = nn(st.unitsPending)
    if type(pending) == 'number' and pending > 0 then
      return ('pema: paraphrasing (%d left)'):format(pending)
    end
    return 'pema: building memory'
  elseif state == 'none' then
    return 'pema: no examples yet'
  end
  return 'pema: ' .. tostring(state)
end

--- A statusline component: pema's background work now (e.g. `pema: training the adapter 40%`),
--- else the state of the current file's workspace as the daemon last pushed it (e.g.
--- `pema: ready · 1650 entries`); '' outside a workspace. Use it as
--- `%{v:lua.require'pema'.statusline()}`.
--- @return string
function M.statusline()
  for _, v in pairs(M._progress) do
    local t = v.title:gsub('^pema: ', '')
    return ('pema: %s%s'):format(t, v.percentage and (' %d%%'):format(v.percentage) or '')
  end
  local root = M.find_root(api.nvim_get_current_buf())
  local st = root and (M._status[root] or M._status[vim.uv.fs_realpath(root) or root])
  if not st then
    return ''
  end
  return M.format_state(st)
end

---------------------------------------------------------------------------------------------------
-- Setup
---------------------------------------------------------------------------------------------------

--- @param opts pema.Config?
function M.setup(opts)
  M.config = vim.tbl_deep_extend('force', vim.deepcopy(M.defaults), opts or {})
  if opts and opts.root_markers then
    M.config.root_markers = opts.root_markers -- lists are replaced, not merged
  end
  if opts and opts.filetypes then
    M.config.filetypes = opts.filetypes
  end
  missing_reported = false
  hl_defaults()
  api.nvim_clear_autocmds({ group = augroup })
  api.nvim_create_autocmd('ColorScheme', { group = augroup, callback = hl_defaults })
  M._track_progress()
  vim.lsp.config(NAME, M.lsp_config(M.config))
  vim.lsp.enable(NAME)
  -- vim.lsp.enable() attaches on FileType; a file with no filetype is attached on reading.
  api.nvim_create_autocmd({ 'BufReadPost', 'BufNewFile' }, {
    group = augroup,
    callback = function(ev)
      if vim.bo[ev.buf].filetype == '' then
        M.attach(ev.buf)
      end
    end,
  })
  -- Buffers loaded before setup(): attach now (vim.lsp.enable sees only later FileType events
  -- before VimEnter).
  for _, buf in ipairs(api.nvim_list_bufs()) do
    if api.nvim_buf_is_loaded(buf) then
      M.attach(buf)
    end
  end
end

return M
