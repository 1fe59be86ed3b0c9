"""The benchmark lab around the service: experiments, load tests and their reports."""
