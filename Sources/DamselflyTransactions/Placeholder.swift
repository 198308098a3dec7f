// DamselflyTransactions
