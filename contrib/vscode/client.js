// The JSON-RPC client of the mcli extension, without anything of VS Code in it, so that it can
// be tested with plain Node: it spawns `mcli-client --stdio` (which bridges to the shared mcli
// server, starting it when none runs), frames messages with `Content-Length` headers, matches
// responses to requests by id and hands `mcli/output` chunks to the run they belong to.
// The protocol is described in docs/protocol.md of the mcli sources.

'use strict';

const { spawn } = require('child_process');
const { EventEmitter } = require('events');

/** The most bytes kept of the client's standard error, for the message when it exits. */
const STDERR_LIMIT = 4096;

class McliClient extends EventEmitter {
  /**
   * @param {string} program the `mcli-client` program (a name on PATH or a path)
   * @param {string[]} args its arguments, `['--stdio']` by default
   */
  constructor(program = 'mcli-client', args = ['--stdio']) {
    super();
    this.nextId = 0;
    this.pending = new Map();
    this.runs = new Map();
    this.input = Buffer.alloc(0);
    this.stderr = '';
    this.closed = false;
    this.child = spawn(program, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.on('error', (err) => this.close(`cannot start ${program}: ${err.message}`));
    this.child.stdout.on('data', (chunk) => this.receive(chunk));
    this.child.stderr.on('data', (chunk) => {
      this.stderr = (this.stderr + chunk.toString()).slice(-STDERR_LIMIT);
    });
    this.child.on('exit', (code, signal) => {
      const how = code === null ? `signal ${signal}` : `status ${code}`;
      const last = this.stderr.trim().split('\n').pop();
      this.close(
        `the connection to the server ended: mcli-client exited with ${how}${last ? `: ${last}` : ''}`
      );
    });
    // A write after the client has gone is reported through `exit`.
    this.child.stdin.on('error', () => {});
  }

  send(message) {
    if (this.closed) {
      return;
    }
    const body = Buffer.from(JSON.stringify({ jsonrpc: '2.0', ...message }), 'utf8');
    this.child.stdin.write(`Content-Length: ${body.length}\r\n\r\n`);
    this.child.stdin.write(body);
  }

  /** Sends a request; resolves with its result, rejects with its error (an Error with `code`). */
  request(method, params) {
    if (this.closed) {
      return Promise.reject(new Error(this.closedReason));
    }
    this.nextId += 1;
    const id = this.nextId;
    const promise = new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
    this.send(params === undefined ? { id, method } : { id, method, params });
    promise.id = id;
    return promise;
  }

  notify(method, params) {
    this.send({ method, params });
  }

  /** The server's commands: `[{name, description, source, error?}]`. */
  async list() {
    return (await this.request('list')).commands;
  }

  /**
   * Runs `command` with `args` in `cwd`; `onOutput(text, stream)` gets the output as it streams.
   * Returns `{id, result}`: the request id (for `cancel`) and a promise of the `execute` result.
   */
  execute(command, args, cwd, onOutput, extra = {}) {
    const result = this.request('execute', { command, args, cwd, ...extra });
    this.runs.set(result.id, onOutput);
    const done = () => this.runs.delete(result.id);
    result.then(done, done);
    return { id: result.id, result };
  }

  /** Cancels the `execute` request `id` (`$/cancelRequest`); it then answers `cancelled`. */
  cancel(id) {
    this.notify('$/cancelRequest', { id });
  }

  receive(chunk) {
    this.input = Buffer.concat([this.input, chunk]);
    for (;;) {
      const headerEnd = this.input.indexOf('\r\n\r\n');
      if (headerEnd < 0) {
        return;
      }
      const header = this.input.subarray(0, headerEnd).toString('latin1');
      const match = /content-length:\s*(\d+)/i.exec(header);
      if (!match) {
        this.child.kill();
        this.close('a message from the server has no Content-Length');
        return;
      }
      const start = headerEnd + 4;
      const end = start + Number(match[1]);
      if (this.input.length < end) {
        return;
      }
      const body = this.input.subarray(start, end).toString('utf8');
      this.input = this.input.subarray(end);
      let message;
      try {
        message = JSON.parse(body);
      } catch {
        continue;
      }
      this.dispatch(message);
    }
  }

  dispatch(message) {
    if (message === null || typeof message !== 'object') {
      return;
    }
    if (message.method !== undefined) {
      const params = message.params || {};
      const onOutput = this.runs.get(params.request_id);
      if (message.method === 'mcli/output' && onOutput) {
        const text =
          params.data !== undefined ? params.data : Buffer.from(params.data_b64 || '', 'base64').toString('latin1');
        onOutput(text, params.stream);
      } else if (message.method === 'mcli/queued' && onOutput) {
        onOutput(`[mcli] waiting for a free slot, ${params.ahead} ahead\n`, 'info');
      }
      return;
    }
    const waiter = this.pending.get(message.id);
    if (!waiter) {
      return;
    }
    this.pending.delete(message.id);
    if (message.error) {
      const err = new Error(message.error.message);
      err.code = message.error.code;
      err.data = message.error.data;
      waiter.reject(err);
    } else {
      waiter.resolve(message.result);
    }
  }

  /** Fails what is in flight with `reason` and ends the client. */
  close(reason) {
    if (this.closed) {
      return;
    }
    this.closed = true;
    this.closedReason = reason;
    for (const waiter of this.pending.values()) {
      waiter.reject(new Error(reason));
    }
    this.pending.clear();
    this.child.stdin.end();
    this.emit('close', reason);
  }

  /** Ends the connection; the server cancels what still runs. */
  dispose() {
    this.child.kill();
  }
}

/** How a command ended: `{how, state}`, e.g. `{how: 'failed with exit code 3', state: 'exit 3'}`. */
function describe(result) {
  const { status, exit_code: code, signal } = result;
  if (status === 'completed') {
    return { how: 'completed', state: `exit ${code}` };
  }
  if (status === 'cancelled') {
    return { how: 'was cancelled', state: 'cancelled' };
  }
  if (status === 'timed_out') {
    return { how: 'timed out', state: 'timed out' };
  }
  if (signal !== null && signal !== undefined) {
    return { how: `was ended by signal ${signal}`, state: `signal ${signal}` };
  }
  if (code !== null && code !== undefined) {
    return { how: `failed with exit code ${code}`, state: `exit ${code}` };
  }
  return { how: `ended: ${status}`, state: String(status) };
}

module.exports = { McliClient, describe };
