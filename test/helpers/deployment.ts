import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAgreement, createParty, enrollDevice, parseAgreement } from '../../shared/crypto/keys.js';
import { signAgreementByAll } from '../../shared/crypto/agreement-signatures.js';
import type { Agreement, AgreementLabels, DeviceSecretFile, LogSecretFile, PartySecretFile, Role } from '../../shared/protocol/schemas.js';

export const JP = 'jp-mod';
export const CN = 'cn-mnd';

/** The devices of the test deployment, by `party/device`. */
export const DEVICES: readonly { party: string; device: string; role: Role }[] = [
  { party: JP, device: 'op1', role: 'operator' },
  { party: JP, device: 'op2', role: 'operator' },
  { party: JP, device: 'audit1', role: 'auditor' },
  { party: JP, device: 'archive1', role: 'archive' },
  { party: CN, device: 'op1', role: 'operator' },
  { party: CN, device: 'archive1', role: 'archive' },
];

/** Security labels for tests (PROTOCOL.md "Security labels"): two classifications, one caveat, named in ja/zh/en. */
export const LABELS: AgreementLabels = {
  classifications: [
    { code: 'UNCLASSIFIED', names: { en: 'Unclassified', ja: '区分なし', zh: '非密' } },
    { code: 'RESTRICTED', names: { en: 'Restricted', ja: '取扱注意', zh: '内部' } },
  ],
  caveats: [{ code: 'HOTLINE-ONLY', names: { en: 'Hotline only', ja: 'ホットライン限り', zh: '仅限热线' } }],
};

export interface Deployment {
  agreement: Agreement;
  logSecret: LogSecretFile;
  parties: Record<string, PartySecretFile>;
  devices: Record<string, DeviceSecretFile>;
}

/** Two ministries, an agreement and six device identities, made for time `now`. */
export async function createDeployment(now: number = Date.now()): Promise<Deployment> {
  const jp = createParty({ id: JP, name: 'Japan Ministry of Defense', languages: ['ja', 'en'] });
  const cn = createParty({ id: CN, name: 'China Ministry of National Defense', languages: ['zh', 'en'] });
  const made = createAgreement({ name: 'jp-cn.hotline.test', parties: [jp.party, cn.party], now });
  const agreement = await signAgreementByAll(made.agreement, [jp, cn]);
  const logSecret = made.logSecret;
  const parties: Record<string, PartySecretFile> = { [JP]: jp, [CN]: cn };
  const devices: Record<string, DeviceSecretFile> = {};
  for (const d of DEVICES) devices[`${d.party}/${d.device}`] = await enrollDevice(parties[d.party]!, { device: d.device, role: d.role, now });
  return { agreement, logSecret: logSecret!, parties, devices };
}

/**
 * The deployment's agreement with `changes` made, signed again by every root (a signature covers
 * the whole agreement, so a changed agreement needs every party to sign it again).
 */
export async function amendAgreement(dep: Deployment, changes: Partial<Omit<Agreement, 'signatures'>>, signers: readonly PartySecretFile[] = Object.values(dep.parties)): Promise<Agreement> {
  const { signatures: _old, ...body } = dep.agreement;
  return signAgreementByAll(parseAgreement({ ...body, ...changes }), signers);
}

export function device(dep: Deployment, key: string): DeviceSecretFile {
  const d = dep.devices[key];
  if (!d) throw new Error(`no test device ${key}`);
  return d;
}

/** A temporary directory removed by the returned function. */
export function tempDir(prefix = 'hotline-test-'): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** Write the agreement to `dir/agreement.json` and return the path. */
export function writeAgreement(dir: string, agreement: Agreement): string {
  const path = join(dir, 'agreement.json');
  writeFileSync(path, JSON.stringify(agreement, null, 2));
  return path;
}
