/**
 * The build network's firewall, run by `divio platform start` in a one-off container of the
 * platform image on the host's network (NET_ADMIN): `node dist/platform/build-firewall.js
 * apply|remove BRIDGE`.
 *
 * RUN steps of app builds run on the build bridge. From there the host's own ports (the router's
 * public port among them, reachable through the bridge's gateway) are refused: INPUT from the
 * bridge, and anything forwarded from it to a port the host publishes (DNAT), which is how
 * published container ports answer. Everything else goes out as on the default bridge, so package
 * downloads (npm, Debian) still work. DOCKER-USER is Docker's place for such rules (evaluated
 * before its own accepts); FORWARD is the fallback where the engine has none.
 */
import { execa } from 'execa';

const BRIDGE = /^dvb-[0-9a-f]{11}$/;
const REJECT = ['-j', 'REJECT', '--reject-with', 'icmp-port-unreachable'];

async function iptables(binary: string, args: string[]): Promise<boolean> {
  const result = await execa(binary, args, { reject: false, stdin: 'ignore' });
  return result.exitCode === 0;
}

/** The iptables variant the engine's own rules are in (its DOCKER-USER chain); nft's by default. */
async function engineIptables(): Promise<{ binary: string; forwardChain: string }> {
  for (const binary of ['iptables', 'iptables-legacy']) {
    if (await iptables(binary, ['-S', 'DOCKER-USER'])) return { binary, forwardChain: 'DOCKER-USER' };
  }
  return { binary: 'iptables', forwardChain: 'FORWARD' };
}

function rules(bridge: string, forwardChain: string): [string, string[]][] {
  return [
    ['INPUT', ['-i', bridge, ...REJECT]],
    [forwardChain, ['-i', bridge, '-m', 'conntrack', '--ctstate', 'DNAT', ...REJECT]],
  ];
}

async function main(argv: string[]): Promise<number> {
  const [action, bridge] = argv;
  if ((action !== 'apply' && action !== 'remove') || !bridge || !BRIDGE.test(bridge)) {
    process.stderr.write('usage: build-firewall apply|remove dvb-XXXXXXXXXXX\n');
    return 2;
  }
  const { binary, forwardChain } = await engineIptables();
  for (const [chain, rule] of rules(bridge, forwardChain)) {
    const present = () => iptables(binary, ['-C', chain, ...rule]);
    if (action === 'apply') {
      if (!(await present()) && !(await iptables(binary, ['-I', chain, '1', ...rule]))) {
        process.stderr.write(`${binary} refused to add the rule ${chain} ${rule.join(' ')}\n`);
        return 1;
      }
    } else {
      while (await present()) if (!(await iptables(binary, ['-D', chain, ...rule]))) break;
    }
  }
  process.stdout.write(`${action === 'apply' ? 'applied' : 'removed'} the build firewall of ${bridge} (${binary}, ${forwardChain})\n`);
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
