"""spendwatch: the serverless monitor for an OpenAI organization's money.

The package is shared by the Lambda functions (through the common layer) and by the `spendwatch`
command-line tool. Its folders are its layers, imported from the top down only: `core` (the models),
`aws` (AWS adapters), `channels` (delivery), `poller`, `alerter`, `watchdog`, `views` and `digest` (the
functions' logic), `cli` and `devtools` (the command line and the local stand-ins, not in the layer).
"""

__version__ = "0.1.0"
