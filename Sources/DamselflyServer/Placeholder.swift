// DamselflyServer
