-- pema's commands and <Plug> mappings. Nothing is loaded until one is used (lazy require), and
-- nothing attaches or starts until setup() or vim.lsp.enable('pema') (see :h pema).
if vim.g.loaded_pema then
  return
end
vim.g.loaded_pema = true

local function pema()
  return require('pema')
end

local cmd = vim.api.nvim_create_user_command
cmd('PemaRewrite', function(a)
  pema().rewrite({ line1 = a.line1, line2 = a.line2, mode = a.args ~= '' and a.args or nil })
end, {
  range = true,
  nargs = '?',
  complete = function()
    return { 'gu', 'fixed', 'plain', 'lighter', 'stronger' }
  end,
  desc = 'pema: rewrite the range in the workspace style (gu, fixed, plain, lighter, stronger)',
})
cmd('PemaAccept', function()
  pema().accept()
end, { desc = 'pema: replace the range with the rewrite' })
cmd('PemaAcceptHunk', function(a)
  pema().accept_hunk(tonumber(a.args))
end, { nargs = '?', desc = 'pema: accept one line (hunk) of the rewrite: the one under the cursor, or [N]' })
cmd('PemaDiscard', function()
  pema().discard()
end, { desc = 'pema: discard the rewrite' })
cmd('PemaRetry', function()
  pema().retry()
end, { desc = 'pema: another sample of the same range' })
cmd('PemaStatus', function()
  pema().status()
end, { desc = "pema: the daemon's status" })
cmd('PemaFiles', function()
  pema().files()
end, { desc = 'pema: the files this workspace learns from, and why others are skipped' })
cmd('PemaExamples', function(a)
  pema().examples(tonumber(a.args))
end, { nargs = '?', desc = 'pema: a few pairs the style is learned from (source → target) [N, default 10]' })
cmd('PemaCompare', function(a)
  pema().compare({ line1 = a.line1, line2 = a.line2 })
end, { range = true, desc = "pema: the plain model's rewrite of the range beside the style's" })
cmd('PemaLearn', function(a)
  pema().learn(a.args ~= '' and a.args or nil)
end, { nargs = '?', complete = 'dir', desc = "pema: learn this folder's style (asks, then writes .pema.toml)" })

local map = vim.keymap.set
map('n', '<Plug>(PemaRewrite)', '<Cmd>PemaRewrite<CR>', { desc = 'pema: rewrite the line' })
map('x', '<Plug>(PemaRewrite)', ':PemaRewrite<CR>', { silent = true, desc = 'pema: rewrite the selection' })
map('n', '<Plug>(PemaAccept)', '<Cmd>PemaAccept<CR>', { desc = 'pema: accept the rewrite' })
map('n', '<Plug>(PemaAcceptHunk)', '<Cmd>PemaAcceptHunk<CR>', { desc = 'pema: accept the line under the cursor' })
map('n', '<Plug>(PemaDiscard)', '<Cmd>PemaDiscard<CR>', { desc = 'pema: discard the rewrite' })
map('n', '<Plug>(PemaRetry)', '<Cmd>PemaRetry<CR>', { desc = 'pema: another sample' })
map('n', '<Plug>(PemaFiles)', '<Cmd>PemaFiles<CR>', { desc = 'pema: files learned from' })
map('n', '<Plug>(PemaCompare)', '<Cmd>PemaCompare<CR>', { desc = 'pema: plain model vs style, this line' })
map('x', '<Plug>(PemaCompare)', ':PemaCompare<CR>', { silent = true, desc = 'pema: plain model vs style' })
map('n', '<Plug>(PemaExamples)', '<Cmd>PemaExamples<CR>', { desc = 'pema: what was learned' })
