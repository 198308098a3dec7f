// DamselflyCommands
