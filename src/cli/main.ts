#!/usr/bin/env node
import { processIo } from './io.js';
import { runCli } from './program.js';

// Output piped into a reader that stops early (`| head`): the rest is not wanted, which is no error.
for (const stream of [process.stdout, process.stderr])
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw error;
  });

let finished = false;
// A command that waits on something nothing will ever settle would otherwise end with exit code 13
// and no word: say so instead (a CLI command never exits without a line of output).
process.on('beforeExit', () => {
  if (finished) return;
  finished = true;
  processIo.err('error: glassbox stopped waiting: the command was left with nothing to wait for');
  processIo.err('hint: this is a bug in glassbox; please report it with the command you ran');
  process.exitCode = 2;
});

process.exitCode = await runCli(process.argv.slice(2), processIo);
finished = true;
