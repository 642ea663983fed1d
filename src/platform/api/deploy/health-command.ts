/**
 * The health check of an app's containers: an HTTP GET of the app's health path on its port, from
 * inside the container, in images that have no curl or wget (slim Debian images rarely do).
 *
 * One `sh -c` script picks the first prober the image has: bash (its /dev/tcp needs no tool at
 * all), else node, else python3. The port and path reach the probers as positional arguments, never
 * pasted into the script text, and are validated besides: the scripts below are constants.
 */

/** A path as it may appear in a request line: no spaces, quotes, backslashes or control characters. */
const HEALTH_PATH = /^\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$/;

/** bash: $1 port, $2 path. Only the status code's first digit matters (2xx, 3xx are healthy). */
const BASH_PROBE = [
  'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1',
  'printf "GET %s HTTP/1.0\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n" "$2" >&3',
  'read -r -t 5 protocol status rest <&3 || exit 1',
  'case "${status:0:3}" in 2[0-9][0-9]|3[0-9][0-9]) exit 0 ;; esac',
  'echo "health check: $2 answered ${status:0:3}" >&2',
  'exit 1',
].join('\n');

/** node -e: process.argv is [node, port, path]. */
const NODE_PROBE = [
  'const [port, path] = process.argv.slice(1);',
  'const request = require("http").get({ host: "127.0.0.1", port: Number(port), path, headers: { host: "localhost" } }, (response) => {',
  '  const healthy = response.statusCode >= 200 && response.statusCode < 400;',
  '  if (!healthy) console.error("health check: " + path + " answered " + response.statusCode);',
  '  process.exit(healthy ? 0 : 1);',
  '});',
  'request.on("error", (error) => { console.error("health check: " + error.message); process.exit(1); });',
].join('\n');

/** python3 -c: sys.argv is ["-c", port, path]. */
const PYTHON_PROBE = [
  'import http.client, sys',
  'try:',
  '    connection = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)',
  '    connection.request("GET", sys.argv[2], headers={"Host": "localhost"})',
  '    status = connection.getresponse().status',
  'except Exception as error:',
  '    sys.exit("health check: %s" % error)',
  'sys.exit(0 if 200 <= status < 400 else "health check: %s answered %d" % (sys.argv[2], status))',
].join('\n');

/**
 * The embedded probers go between single quotes: none of them may contain one (checked at load
 * time, so an edit that breaks this fails every test, not a deployment).
 */
for (const probe of [BASH_PROBE, NODE_PROBE, PYTHON_PROBE]) {
  if (probe.includes("'")) throw new Error('a health probe script contains a single quote');
}

const SELECT_PROBER = [
  'if command -v bash >/dev/null 2>&1; then',
  // --norc: Debian's bash reads ~/.bashrc when stdin is a socket, and an image's .bashrc may print or fail.
  `  exec bash --norc --noprofile -c '${BASH_PROBE}' bash "$1" "$2"`,
  'elif command -v node >/dev/null 2>&1; then',
  `  exec node -e '${NODE_PROBE}' "$1" "$2"`,
  'elif command -v python3 >/dev/null 2>&1; then',
  `  exec python3 -c '${PYTHON_PROBE}' "$1" "$2"`,
  'fi',
  'echo "health check: the image has none of bash, node, python3 to probe $2 with" >&2',
  'exit 1',
].join('\n');

export function validateHealthTarget(port: number, path: string): void {
  if (!Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new Error(`the health check port must be an integer from 1 to 65535, not ${String(port)}`);
  }
  if (!HEALTH_PATH.test(path)) {
    throw new Error(`the health check path must start with / and hold only URL path characters, not ${JSON.stringify(path)}`);
  }
}

/** `Healthcheck.Test` for Docker: healthy when GET `path` on `port` answers 2xx or 3xx. */
export function healthCheckCommand(port: number, path: string): string[] {
  validateHealthTarget(port, path);
  // `healthcheck` is $0 of the script; the port and path are $1 and $2.
  return ['CMD', 'sh', '-c', SELECT_PROBER, 'healthcheck', String(port), path];
}
