// What a spec needs from the script that runs it (scripts/e2e*.sh, bench/web.sh set the variables).
// In strict runs (CI, or NKVM_E2E_STRICT=1 as scripts/test-all.sh sets) a missing variable fails the
// test: a suite that lost its fixture must not pass by skipping. Run by hand, the test is skipped.
import { execFileSync } from 'node:child_process';
import { test } from '@playwright/test';

export const strict = !!(process.env.CI || process.env.NKVM_E2E_STRICT);

/** Returns the variables' values; when one is unset, fails the test (strict) or skips it. */
export function requireEnv(...names: string[]): string[] {
  const missing = names.filter((name) => !process.env[name]);
  if (missing.length > 0) {
    const why = `needs ${missing.join(' and ')} (set by the script that runs this spec)`;
    if (strict) throw new Error(`missing environment: ${why}`);
    test.skip(true, why);
  }
  return names.map((name) => process.env[name]!);
}

/** Runs the test cluster's kubectl (NKVM_E2E_KUBECTL, admin kubeconfig in KUBECONFIG). */
export function kubectl(args: string[], input?: string): string {
  const [binary] = requireEnv('NKVM_E2E_KUBECTL');
  return execFileSync(binary, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
}
