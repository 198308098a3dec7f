// DamselflyRESP
