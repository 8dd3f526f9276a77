-- Neovim config for the screenshot (test/screenshot.py runs `nvim -u this notes.md` in a pty):
-- wait for the workspace's adapter, rewrite lines 1-3, and when the rewrite is done touch
-- $PEMA_SHOT_MARK so that the script takes the picture.
vim.opt.rtp:prepend(assert(vim.env.PEMA_NVIM_PLUGIN))
vim.o.termguicolors = true
vim.o.background = 'dark'
vim.o.number = true
vim.o.laststatus = 2
vim.o.shortmess = vim.o.shortmess .. 'IcF'
vim.o.swapfile = false
vim.o.wrap = true
vim.o.linebreak = true

local pema = require('pema')
pema.setup({ server_path = assert(vim.env.PEMA_BIN) })

_G.pema_statusline = function()
  local c = pema.get_client()
  local state = c and 'pema: attached' or 'pema: starting'
  return ' %f %m%=' .. state .. '  %l:%c '
end
vim.o.statusline = '%!v:lua.pema_statusline()'

local function mark(msg)
  local f = io.open(assert(vim.env.PEMA_SHOT_MARK), 'w')
  if f then
    f:write(msg)
    f:close()
  end
end

vim.api.nvim_create_autocmd('User', {
  pattern = 'PemaRewriteDone',
  callback = function()
    vim.defer_fn(function()
      vim.cmd('redraw')
      mark('done')
    end, 300)
  end,
})

local deadline = vim.uv.now() + 300000
local function poll()
  if vim.uv.now() > deadline then
    mark('timeout')
    return
  end
  local c = pema.get_client()
  if not (c and c.initialized) then
    return vim.defer_fn(poll, 200)
  end
  pema.request_status(function(err, st)
    local ready = false
    for _, w in ipairs((not err and st and st.workspaces) or {}) do
      if type(w.adapter) == 'table' and w.adapter.state == 'ready' and w.adapter.available then
        ready = true
      end
    end
    if not ready then
      return vim.defer_fn(poll, 1000)
    end
    vim.cmd('normal! ggVjj\27')
    vim.cmd("'<,'>PemaRewrite")
  end)
end
vim.defer_fn(poll, 200)
