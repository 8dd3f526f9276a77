-- The `pema` language server for Neovim 0.11's vim.lsp.config / vim.lsp.enable:
--
--   vim.lsp.enable('pema')                                   -- defaults: `pema lsp` on $PATH
--   vim.lsp.config('pema', { cmd = { '/path/to/pema', 'lsp' } })   -- override any field
--
-- It attaches only to files under a folder with a `.pema.toml` (never the home folder or `/`);
-- :PemaLearn opts a folder in. require('pema').setup({...}) configures and enables it for you.
return require('pema').lsp_config()
