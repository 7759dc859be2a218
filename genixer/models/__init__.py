"""Model building blocks: offline tokenizer, tiny from-config MLLMs, checkpoint IO, input encoding."""
