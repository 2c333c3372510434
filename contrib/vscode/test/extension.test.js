// Tests of the mcli VS Code extension against a running server, run by tests/tests/editors.rs as
// `node --test contrib/vscode/test/`. VS Code itself is not started: a small stand-in for the
// `vscode` module records what the extension shows (terminal output, status bar, messages) and
// plays the user (quick pick, input box, Ctrl+C). Everything else is real: client.js spawns
// MCLI_TEST_CLIENT --stdio, which talks to the test's server.
//
// The environment is that of the Emacs and Neovim tests: MCLI_TEST_CLIENT, MCLI_TEST_DIR,
// MCLI_TEST_GO (lets `slowlines` print "line 2"), MCLI_TEST_PIDFILE (where `longrun` writes its
// pid); `latin1` prints "caf\351\n", which is not UTF-8.

'use strict';

const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const Module = require('module');

// The stand-in for the `vscode` module.
const shown = { status: '', warnings: [], errors: [], pick: null, input: null, picked: null };
const config = { clientPath: process.env.MCLI_TEST_CLIENT };
class EventEmitter {
  constructor() {
    this.listeners = [];
    this.event = (listener) => {
      this.listeners.push(listener);
      return { dispose() {} };
    };
  }
  fire(value) {
    this.listeners.forEach((listener) => listener(value));
  }
}
const commands = new Map();
const vscode = {
  EventEmitter,
  StatusBarAlignment: { Left: 1 },
  workspace: {
    workspaceFolders: [{ uri: { scheme: 'file', fsPath: process.env.MCLI_TEST_DIR } }],
    getWorkspaceFolder: () => undefined,
    getConfiguration: () => ({ get: (key, fallback) => (key in config ? config[key] : fallback) }),
  },
  window: {
    activeTextEditor: undefined,
    activeTerminal: undefined,
    createStatusBarItem: () => ({
      set text(value) {
        shown.status = value;
      },
      show() {},
      dispose() {},
    }),
    createTerminal({ name, pty }) {
      const terminal = { name, pty, text: '', opened: false };
      pty.onDidWrite((data) => {
        terminal.text += data;
      });
      terminal.show = () => {
        if (!terminal.opened) {
          terminal.opened = true;
          pty.open();
        }
      };
      vscode.window.activeTerminal = terminal;
      return terminal;
    },
    showQuickPick: async (items) => {
      shown.pick = items;
      return items.find((item) => item.label === shown.picked);
    },
    showInputBox: async () => shown.input,
    showWarningMessage: (message) => shown.warnings.push(message),
    showErrorMessage: (message) => shown.errors.push(message),
    onDidCloseTerminal: () => ({ dispose() {} }),
  },
  commands: {
    registerCommand: (name, callback) => {
      commands.set(name, callback);
      return { dispose() {} };
    },
  },
};
const load = Module._load;
Module._load = function (request, ...rest) {
  return request === 'vscode' ? vscode : load.call(this, request, ...rest);
};

const extension = require('../extension');
const { McliClient } = require('../client');
const context = { subscriptions: [] };
extension.activate(context);

async function waitFor(what, cond) {
  const deadline = Date.now() + 60000;
  while (!cond()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting until ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function lines(terminal) {
  return terminal.text.split('\r\n');
}

async function ended(terminal) {
  await waitFor(`the command of ${terminal.name} ends`, () => /\[mcli\] \S+ (completed|failed|was|timed|ended)|\[mcli\] (unknown|the connection)/.test(terminal.text));
}

function longrunPid() {
  const pid = Number(fs.readFileSync(process.env.MCLI_TEST_PIDFILE, 'utf8').trim());
  assert.ok(pid > 0, 'no pid in the pid file');
  return pid;
}

async function waitGone(pid) {
  await waitFor(`process ${pid} is gone`, () => {
    try {
      return / Z /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\)/, ''));
    } catch {
      return true;
    }
  });
}

test('the command is picked from the names that `list` gives, and streams', async () => {
  shown.picked = 'slowlines';
  shown.input = '"a b" c';
  await commands.get('mcli.run')();
  const labels = shown.pick.map((item) => item.label);
  for (const name of ['echo', 'hello', 'exit', 'slowlines', 'longrun']) {
    assert.ok(labels.includes(name), `${name} is not in ${labels}`);
  }
  assert.match(shown.pick.find((item) => item.label === 'hello').description, /greeting/);
  const terminal = vscode.window.activeTerminal;
  assert.strictEqual(terminal.name, 'mcli slowlines');
  await waitFor('line 1 is in the terminal', () => lines(terminal).includes('line 1'));
  // Still running: it waits for the go file.
  assert.strictEqual(shown.status, 'mcli slowlines: running');
  assert.ok(!terminal.text.includes('line 2'));
  fs.writeFileSync(process.env.MCLI_TEST_GO, '');
  await ended(terminal);
  assert.ok(lines(terminal).includes('line 2'), terminal.text);
  assert.ok(lines(terminal).includes('args: a b|c'), terminal.text);
  assert.ok(lines(terminal).includes(process.env.MCLI_TEST_DIR), terminal.text);
  assert.match(terminal.text, /\[mcli\] slowlines completed after/);
  assert.strictEqual(shown.status, 'mcli slowlines: exit 0');
});

test('a failure shows its exit status', async () => {
  const terminal = extension.run('exit', ['3']);
  terminal.show();
  await ended(terminal);
  assert.match(terminal.text, /\[mcli\] exit failed with exit code 3 after/);
  assert.strictEqual(shown.status, 'mcli exit: exit 3');
});

test('bytes that are not UTF-8 arrive', async () => {
  const terminal = extension.run('latin1', []);
  terminal.show();
  await ended(terminal);
  assert.ok(lines(terminal).includes('caf\u00e9'), terminal.text);
});

test('an unknown command is reported', async () => {
  const terminal = extension.run('helo', []);
  terminal.show();
  await ended(terminal);
  assert.match(terminal.text, /\[mcli\] unknown command `helo`; did you mean `hello`\?/);
  assert.strictEqual(shown.status, 'mcli helo: error');
});

test('Ctrl+C in the terminal cancels, and the process is gone', async () => {
  const terminal = extension.run('longrun', []);
  terminal.show();
  await waitFor('longrun has started', () => lines(terminal).includes('started'));
  const pid = longrunPid();
  terminal.pty.handleInput('\x03');
  await ended(terminal);
  assert.match(terminal.text, /\[mcli\] longrun was cancelled/);
  assert.strictEqual(shown.status, 'mcli longrun: cancelled');
  await waitGone(pid);
});

test('the cancel command needs a running command', async () => {
  commands.get('mcli.cancel')();
  assert.deepStrictEqual(shown.warnings, ['mcli: no command is running in the active terminal']);
});

test('a lost connection ends the command and says so', async () => {
  const terminal = extension.run('longrun', []);
  terminal.show();
  await waitFor('longrun has started', () => lines(terminal).includes('started'));
  const pid = longrunPid();
  extension.deactivate();
  await ended(terminal);
  assert.match(terminal.text, /\[mcli\] the connection to the server ended: mcli-client exited with signal SIGTERM/);
  await waitGone(pid);
});

test('a missing client is reported', async () => {
  const client = new McliClient('/nonexistent/mcli-client');
  await assert.rejects(client.list(), /cannot start \/nonexistent\/mcli-client: spawn \/nonexistent\/mcli-client ENOENT/);
  config.clientPath = '/nonexistent/mcli-client';
  shown.picked = 'echo';
  await commands.get('mcli.run')();
  config.clientPath = process.env.MCLI_TEST_CLIENT;
  assert.strictEqual(shown.errors.length, 1);
  assert.match(shown.errors[0], /^mcli: cannot start \/nonexistent\/mcli-client/);
});

test.after(() => extension.deactivate());
