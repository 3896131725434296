"""The topics section: the topics, a topic's messages (browser) and the producer form."""
