"""What the tests and the benchmarks build: tiny models in the published layout, served from an offline Hugging Face cache."""
