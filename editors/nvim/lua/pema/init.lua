-- pema for Neovim: a client of `pema lsp` (docs/protocol.md).
--
--   require('pema').setup({ ... })   -- see M.defaults
--   :'<,'>PemaRewrite [gu|fixed|plain]   rewrite a range, streamed into a preview
--   :PemaAccept / :PemaDiscard            (<CR> / q / <Esc> in the preview)
--   :PemaStatus                           what the daemon knows of each workspace
--   :checkhealth pema

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
  --- Filetypes to attach to; nil attaches to every normal file buffer.
  --- @type string[]?
  filetypes = nil,
  --- How the workspace root of a file is found: the nearest folder holding one of the first
  --- entry's names, else of the second's, …; else the file's own folder. An entry may be a list
  --- of names of equal priority.
  root_markers = { '.pema.toml', '.git' },
  --- Extra environment for the daemon (e.g. { PEMA_MODEL = '/path/model.gguf' }).
  --- @type table<string,string>?
  cmd_env = nil,
  --- Echo pema's background progress (learning a workspace) in the message area.
  progress = true,
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
--- @class pema.Session
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
--- @type pema.Session?
M._session = nil

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

--- The workspace root of a file (see `root_markers`).
--- @param path string absolute file path (or a buffer number)
--- @return string
function M.find_root(path)
  if type(path) == 'number' then
    path = api.nvim_buf_get_name(path)
  end
  path = vim.fs.normalize(vim.fn.fnamemodify(path, ':p'))
  local markers = (M.config or M.defaults).root_markers or {}
  for _, marker in ipairs(markers) do
    local root = vim.fs.root(path, marker)
    if root then
      return root
    end
  end
  return vim.fs.dirname(path)
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

-- `$/progress` for the pema client: partial results of our rewrites go to the preview; every
-- other token (the daemon's work-done progress `pema/<task>/<n>`) goes to the standard handler,
-- so that `LspProgress` and `vim.lsp.status()` keep working.
local function progress_handler(err, params, ctx, config)
  if params and is_ours(params.token) then
    local s = M._session
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
      if client._add_workspace_folder then
        client:_add_workspace_folder(root)
      else
        local wf = { { uri = vim.uri_from_fname(root), name = root } }
        client:notify('workspace/didChangeWorkspaceFolders', { event = { added = wf, removed = {} } })
        client.workspace_folders = vim.list_extend(client.workspace_folders or {}, wf)
      end
    end
  end
  return true
end

local missing_reported = false

--- Start (or reuse) the daemon for a buffer, when the buffer is a file it should see.
--- @param bufnr integer?
--- @return integer? client_id
function M.attach(bufnr)
  bufnr = bufnr or api.nvim_get_current_buf()
  local c = M.config
  if not c or not api.nvim_buf_is_valid(bufnr) or vim.bo[bufnr].buftype ~= '' then
    return
  end
  local name = api.nvim_buf_get_name(bufnr)
  if name == '' or name:match('^%a[%w+.-]*://') then
    return
  end
  if c.filetypes and not vim.tbl_contains(c.filetypes, vim.bo[bufnr].filetype) then
    return
  end
  local cmd = M.cmd()
  if vim.fn.executable(cmd[1]) ~= 1 then
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
  local root = M.find_root(name)
  -- An object even when empty (no mode: the adapter's own choice).
  local init_options = vim.empty_dict()
  if c.mode then
    init_options.mode = c.mode
  end
  if c.lambda_max then
    init_options.lambdaMax = c.lambda_max
  end
  return vim.lsp.start({
    name = NAME,
    cmd = cmd,
    cmd_env = c.cmd_env,
    root_dir = root,
    workspace_folders = { { uri = vim.uri_from_fname(root), name = root } },
    init_options = init_options,
    handlers = { ['$/progress'] = progress_handler },
    on_exit = function(code, signal)
      if code ~= 0 and signal == 0 then
        vim.schedule(function()
          notify(
            ('the daemon (%s) exited with code %d; see :LspLog and :checkhealth pema'):format(
              table.concat(cmd, ' '),
              code
            ),
            vim.log.levels.ERROR
          )
        end)
      end
    end,
  }, { bufnr = bufnr, reuse_client = reuse_client })
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

local function update_preview(s)
  if not (s.preview_buf and api.nvim_buf_is_valid(s.preview_buf)) then
    return
  end
  local lines = vim.split(s.text ~= '' and s.text or '…', '\n', { plain = true })
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

local function close_session(s)
  if M._session == s then
    M._session = nil
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
    footer = ' <CR> accept · q discard ',
    footer_pos = 'right',
  })
  s.preview_win = win
  vim.wo[win].wrap = true
  vim.wo[win].linebreak = true
  vim.wo[win].winhighlight = 'NormalFloat:PemaPreview,FloatTitle:PemaPreviewTitle'
  local o = { buffer = buf, nowait = true, silent = true }
  vim.keymap.set('n', '<CR>', M.accept, vim.tbl_extend('force', o, { desc = 'pema: accept the rewrite' }))
  vim.keymap.set('n', 'q', M.discard, vim.tbl_extend('force', o, { desc = 'pema: discard the rewrite' }))
  vim.keymap.set('n', '<Esc>', M.discard, vim.tbl_extend('force', o, { desc = 'pema: discard the rewrite' }))
  api.nvim_create_autocmd('WinClosed', {
    group = augroup,
    pattern = tostring(win),
    once = true,
    callback = function()
      if M._session == s and s.preview_win then
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

--- Rewrite a range of the current buffer in its workspace's style.
--- @param opts { line1: integer, line2: integer, mode: string?, options: table? }?
function M.rewrite(opts)
  opts = opts or {}
  local bufnr = api.nvim_get_current_buf()
  local client = vim.lsp.get_clients({ bufnr = bufnr, name = NAME })[1]
  if not client then
    if not M.config then
      notify("not set up: call require('pema').setup() first", vim.log.levels.ERROR)
    elseif vim.fn.executable(M.cmd()[1]) ~= 1 then
      notify(('the daemon binary %q was not found (see :checkhealth pema)'):format(M.cmd()[1]), vim.log.levels.ERROR)
    else
      notify('no pema daemon is attached to this buffer (is it a file on disk?)', vim.log.levels.ERROR)
    end
    return
  end
  local line1 = opts.line1 or api.nvim_win_get_cursor(0)[1]
  local line2 = opts.line2 or line1
  local sr, sc, er, ec = byte_range(bufnr, line1, line2)
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
  }
  hl_defaults()
  s.mark = api.nvim_buf_set_extmark(bufnr, ns, sr, sc, {
    end_row = er,
    end_col = ec,
    right_gravity = false,
    end_right_gravity = true,
    hl_group = 'PemaRange',
  })
  M._session = s

  local params = {
    uri = vim.uri_from_bufnr(bufnr),
    range = range,
    mode = opts.mode,
    options = opts.options,
    partialResultToken = s.token,
  }
  local ok, id = client:request('pema/rewrite', params, function(err, result)
    if M._session ~= s then
      return -- cancelled or replaced
    end
    s.request_id = nil
    if err then
      close_session(s)
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
    close_session(s)
    notify('could not send the rewrite: the daemon is not running', vim.log.levels.ERROR)
    return
  end
  s.request_id = id
  open_preview(s)
  return s
end

--- Replace the range with the finished rewrite.
--- @return boolean accepted
function M.accept()
  local s = M._session
  if not s then
    notify('no rewrite to accept', vim.log.levels.WARN)
    return false
  end
  if not s.done then
    notify('the rewrite is still being generated (wait, or :PemaDiscard)', vim.log.levels.WARN)
    return false
  end
  if not api.nvim_buf_is_valid(s.bufnr) then
    close_session(s)
    return false
  end
  local m = api.nvim_buf_get_extmark_by_id(s.bufnr, ns, s.mark, { details = true })
  if not m[1] then
    close_session(s)
    notify('the rewritten range is gone', vim.log.levels.WARN)
    return false
  end
  local sr, sc, er, ec = m[1], m[2], m[3].end_row, m[3].end_col
  local lines = vim.split(s.text, '\n', { plain = true })
  close_session(s)
  api.nvim_buf_set_text(s.bufnr, sr, sc, er, ec, lines)
  return true
end

--- Close the preview (cancelling the request if it still runs).
--- @param opts { quiet: boolean? }?
function M.discard(opts)
  local s = M._session
  if not s then
    if not (opts and opts.quiet) then
      notify('no rewrite to discard', vim.log.levels.WARN)
    end
    return
  end
  if s.request_id and not s.done then
    pcall(s.client.cancel_request, s.client, s.request_id)
  end
  close_session(s)
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
  local up = nn(st.uptime_seconds)
  add('pema %s · model %s · up %s s', fmt_any(st.version), fmt_any(st.model), type(up) == 'number' and ('%.0f'):format(up) or '-')
  local q = nn(st.queue) or {}
  add(
    'queue: %s rewrites waiting · background waiting: %s · busy: %s',
    fmt_num(q.rewrites_waiting),
    fmt_any(q.background_waiting),
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
    add('  state dir    %s', fmt_any(w.state_dir))
    add(
      '  files        %s (%s corpus, %s pairs files), %s read so far',
      fmt_num(w.files),
      fmt_num(w.corpus_files),
      fmt_num(w.pairs_files),
      fmt_num(w.files_read)
    )
    add(
      '  units        %s (%s paraphrased, %s pending) · pairs %s',
      fmt_num(w.units),
      fmt_num(w.units_paraphrased),
      fmt_num(w.units_pending),
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
      fmt_num(a.held_out_loss),
      fmt_num(a.held_out_ce),
      fmt_num(a.trainings)
    )
    local lr = nn(w.last_refresh)
    if lr then
      add(
        '  last refresh %s read, %s removed, %s unchanged%s',
        fmt_num(lr.files_read),
        fmt_num(lr.files_removed),
        fmt_num(lr.files_unchanged),
        lr.config_reloaded == true and ', config reloaded' or ''
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
    if nn(w.config_error) then
      add('  config error %s', fmt_any(w.config_error))
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

--- :PemaStatus — the status in a scratch float (q closes it).
function M.status()
  M.request_status(function(err, result)
    if err then
      notify('status: ' .. tostring(err.message), vim.log.levels.ERROR)
      return
    end
    local lines = M.format_status(result)
    local buf = api.nvim_create_buf(false, true)
    vim.bo[buf].bufhidden = 'wipe'
    api.nvim_buf_set_lines(buf, 0, -1, false, lines)
    vim.bo[buf].modifiable = false
    vim.bo[buf].filetype = 'pema-status'
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
      title = ' pema status ',
      footer = ' q close ',
      footer_pos = 'right',
    })
    vim.wo[win].wrap = false
    for _, k in ipairs({ 'q', '<Esc>' }) do
      vim.keymap.set('n', k, function()
        pcall(api.nvim_win_close, win, true)
      end, { buffer = buf, nowait = true, silent = true })
    end
  end)
end

---------------------------------------------------------------------------------------------------
-- Setup
---------------------------------------------------------------------------------------------------

function M._create_commands()
  api.nvim_create_user_command('PemaRewrite', function(a)
    local mode = a.args ~= '' and a.args or nil
    M.rewrite({ line1 = a.line1, line2 = a.line2, mode = mode })
  end, {
    range = true,
    nargs = '?',
    complete = function()
      return { 'gu', 'fixed', 'plain' }
    end,
    desc = 'pema: rewrite the range in the workspace style (optional mode: gu, fixed, plain)',
  })
  api.nvim_create_user_command('PemaAccept', function()
    M.accept()
  end, { desc = 'pema: replace the range with the rewrite' })
  api.nvim_create_user_command('PemaDiscard', function()
    M.discard()
  end, { desc = 'pema: discard the rewrite' })
  api.nvim_create_user_command('PemaStatus', function()
    M.status()
  end, { desc = "pema: the daemon's status" })
end

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
  M._create_commands()
  hl_defaults()
  api.nvim_clear_autocmds({ group = augroup })
  api.nvim_create_autocmd({ 'BufReadPost', 'BufNewFile', 'FileType' }, {
    group = augroup,
    callback = function(ev)
      M.attach(ev.buf)
    end,
  })
  if M.config.progress then
    api.nvim_create_autocmd('LspProgress', {
      group = augroup,
      callback = function(ev)
        local client = vim.lsp.get_client_by_id(ev.data.client_id)
        local v = ev.data.params and ev.data.params.value
        if not client or client.name ~= NAME or type(v) ~= 'table' or not v.kind then
          return
        end
        local msg = v.title or 'pema'
        if v.message then
          msg = msg .. ': ' .. v.message
        end
        if v.percentage then
          msg = ('%s (%d%%)'):format(msg, v.percentage)
        end
        if v.kind == 'end' then
          msg = msg .. ' ✓'
        end
        api.nvim_echo({ { msg, 'Comment' } }, false, {})
      end,
    })
  end
  api.nvim_create_autocmd('ColorScheme', { group = augroup, callback = hl_defaults })
  for _, buf in ipairs(api.nvim_list_bufs()) do
    if api.nvim_buf_is_loaded(buf) then
      M.attach(buf)
    end
  end
end

return M
