/**
 * @module Entry point: argv → the subcommand (`convert`, `forward`, `webhook-config`) or the server → exit status.
 */
import { convert, processIo } from './commands/convert.ts';
import { forward, processForwardIo } from './commands/forward.ts';
import { serve } from './commands/serve.ts';
import { webhookConfig, processIo as webhookConfigIo } from './commands/webhook-config.ts';

/** Runs kube-audit-rest with `argv` (a subcommand and its flags, or the server's flags) and resolves with the exit status. */
export async function main(argv: readonly string[]): Promise<number> {
  if (argv[0] === 'convert') return convert(argv.slice(1), processIo());
  if (argv[0] === 'forward') return forward(argv.slice(1), processForwardIo());
  if (argv[0] === 'webhook-config') return webhookConfig(argv.slice(1), webhookConfigIo());
  return serve(argv);
}

if (import.meta.main) {
  process.exit(await main(process.argv.slice(2)));
}
