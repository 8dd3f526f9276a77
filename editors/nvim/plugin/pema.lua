-- Commands exist as soon as the plugin is on 'runtimepath'; the daemon starts after
-- require('pema').setup({...}).
if vim.g.loaded_pema then
  return
end
vim.g.loaded_pema = true
require('pema')._create_commands()
