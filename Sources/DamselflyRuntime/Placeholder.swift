// DamselflyRuntime
