"""QnA bot: a question (and optional passage) as a prompt that fits, the supporting sentence, extractive spans."""
