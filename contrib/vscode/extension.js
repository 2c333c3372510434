// The VS Code side of the mcli extension: `mcli: Run Command` picks a command from the server's
// list, asks for its arguments and runs it in the workspace folder, its output streaming into a
// terminal of its own; Ctrl+C in that terminal (or `mcli: Cancel`) cancels it, and the end line
// and the status bar show its exit status. The JSON-RPC client is client.js.

'use strict';

const vscode = require('vscode');
const { McliClient, describe } = require('./client');

let client = null;
let statusItem = null;
/** The runs whose terminal is open, by terminal. */
const runs = new Map();

function getClient() {
  if (!client || client.closed) {
    const config = vscode.workspace.getConfiguration('mcli');
    client = new McliClient(config.get('clientPath', 'mcli-client'), config.get('clientArgs', ['--stdio']));
  }
  return client;
}

/** Splits an argument line at spaces, keeping quoted words ("a b" or 'a b') together. */
function splitArgs(line) {
  const args = [];
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  let m;
  while ((m = re.exec(line)) !== null) {
    args.push(m[1] !== undefined ? m[1] : m[2] !== undefined ? m[2] : m[3]);
  }
  return args;
}

function workingDirectory() {
  const editor = vscode.window.activeTextEditor;
  const folder =
    (editor && vscode.workspace.getWorkspaceFolder(editor.document.uri)) ||
    (vscode.workspace.workspaceFolders || [])[0];
  return folder && folder.uri.scheme === 'file' ? folder.uri.fsPath : process.cwd();
}

function showState(command, state) {
  statusItem.text = `mcli ${command}: ${state}`;
  statusItem.show();
}

/** Runs `command` with `args`; returns the terminal showing it. */
function run(command, args) {
  const mcli = getClient();
  const write = new vscode.EventEmitter();
  const close = new vscode.EventEmitter();
  const state = { id: null, done: false, client: mcli };
  const show = (text) => write.fire(text.replace(/\r?\n/g, '\r\n'));
  const pty = {
    onDidWrite: write.event,
    onDidClose: close.event,
    open() {
      const cwd = workingDirectory();
      show(`mcli ${[command, ...args].join(' ')} in ${cwd}\n\n`);
      showState(command, 'running');
      const extra = vscode.workspace.getConfiguration('mcli').get('sendEnvironment', true) ? { env: process.env } : {};
      const call = mcli.execute(command, args, cwd, (text) => show(text), extra);
      state.id = call.id;
      call.result.then(
        (result) => {
          const { how, state: shown } = describe(result);
          show(`\n[mcli] ${command} ${how} after ${(result.duration_ms / 1000).toFixed(2)} s\n`);
          showState(command, shown);
        },
        (err) => {
          show(`[mcli] ${err.message}\n`);
          showState(command, 'error');
        }
      ).finally(() => {
        state.done = true;
      });
    },
    close() {
      if (!state.done && state.id !== null) {
        mcli.cancel(state.id);
      }
    },
    handleInput(data) {
      if (data === '\x03' && !state.done && state.id !== null) {
        show('[mcli] cancelling\n');
        mcli.cancel(state.id);
      }
    },
  };
  const terminal = vscode.window.createTerminal({ name: `mcli ${command}`, pty });
  runs.set(terminal, state);
  terminal.show(true);
  return terminal;
}

async function runCommand() {
  let commands;
  try {
    commands = await getClient().list();
  } catch (err) {
    vscode.window.showErrorMessage(`mcli: ${err.message}`);
    return;
  }
  const picked = await vscode.window.showQuickPick(
    commands.map((c) => ({ label: c.name, description: c.error || c.description || '' })),
    { placeHolder: 'mcli command' }
  );
  if (!picked) {
    return;
  }
  const line = await vscode.window.showInputBox({ prompt: `Run ${picked.label} with arguments` });
  if (line === undefined) {
    return;
  }
  run(picked.label, splitArgs(line));
}

function cancelCommand() {
  const state = runs.get(vscode.window.activeTerminal);
  if (!state || state.done || state.id === null) {
    vscode.window.showWarningMessage('mcli: no command is running in the active terminal');
    return;
  }
  state.client.cancel(state.id);
}

function activate(context) {
  statusItem = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Left);
  context.subscriptions.push(
    statusItem,
    vscode.commands.registerCommand('mcli.run', runCommand),
    vscode.commands.registerCommand('mcli.cancel', cancelCommand),
    vscode.window.onDidCloseTerminal((terminal) => runs.delete(terminal)),
    { dispose: () => client && client.dispose() }
  );
}

function deactivate() {
  if (client) {
    client.dispose();
  }
}

module.exports = { activate, deactivate, run, splitArgs };
