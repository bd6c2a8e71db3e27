/**
 * @module Entry point: argv → the subcommand (`convert`, `forward`, `webhook-config`) or the server → exit status.
 *
 * Subcommands are imported only when asked for: the server never loads the forwarder's Kafka client,
 * whose code and WebAssembly would otherwise sit in its heap (measured: with it loaded, the server spent
 * about 10 % more CPU per request on the mix, in the larger heap's collections).
 */

/** Runs kube-audit-rest with `argv` (a subcommand and its flags, or the server's flags) and resolves with the exit status. */
export async function main(argv: readonly string[]): Promise<number> {
  switch (argv[0]) {
    case 'convert': {
      const { convert, processIo } = await import('./commands/convert.ts');
      return convert(argv.slice(1), processIo());
    }
    case 'forward': {
      const { forward, processForwardIo } = await import('./commands/forward.ts');
      return forward(argv.slice(1), processForwardIo());
    }
    case 'webhook-config': {
      const { webhookConfig, processIo } = await import('./commands/webhook-config.ts');
      return webhookConfig(argv.slice(1), processIo());
    }
    default: {
      const { serve } = await import('./commands/serve.ts');
      return serve(argv);
    }
  }
}

if (import.meta.main) {
  process.exit(await main(process.argv.slice(2)));
}
