"""spendwatch: the serverless monitor for an OpenAI organization's money.

The package is shared by the poller and alerter Lambda functions (through the common layer) and by the
`spendwatch` command-line tool. Modules are laid out by role: models (`config`, `snapshot`, `alerts`),
pure logic (`rules`, `decide`, `render`), adapters (`openai_api`, `store`, `senders`, `secrets`) and
orchestration (`poll`, `alerting`).
"""

__version__ = "0.1.0"
