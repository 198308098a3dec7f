// DamselflyStorage
