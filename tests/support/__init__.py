"""What the tests are built from, one concern per module (imported by name, never through
`conftest.py`, which holds fixtures only):

- `paths`: where the project is;
- `servers`: real processes on free ports (redis-server, `python -m service serve`, nginx);
- `aio`: waiting on another process's state, and clients run beside a test;
- `sse`: reading a stream as a browser does, on `service.sse`'s parser;
- `transports`: in-memory sockets for the hub and its subscribers;
- `recording`: the app's own parts, writing down what they are told;
- `brokers`: a broker started the way the app starts one;
- `factories`: tokens, settings, logs and decoded messages, and the fixtures' types;
- `bench_records`: bench records (steps, runs, cases) for the bench's own tests.
"""
