"""Chat with your documents: parse, chunk, store (chromadb), retrieve, answer with citations, evaluate."""
