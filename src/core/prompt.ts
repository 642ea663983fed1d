/** Reading a secret from the terminal without echoing it. */
import { createInterface } from 'node:readline';

export async function readSecretLine(question: string): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  // Echo nothing of what is typed after the question.
  const writable = rl as unknown as { _writeToOutput: (s: string) => void };
  let asked = false;
  writable._writeToOutput = (s: string) => {
    if (!asked) {
      process.stderr.write(s);
      asked = true;
    }
  };
  try {
    return await new Promise<string>((resolve) => rl.question(question, (answer) => resolve(answer.trim())));
  } finally {
    rl.close();
    process.stderr.write('\n');
  }
}
