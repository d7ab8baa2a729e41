class CodebookSyncCallback: pass
