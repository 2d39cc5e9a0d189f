import { createAgreement, createParty, enrollDevice } from '../../shared/crypto/keys.js';
import { signAgreementByAll } from '../../shared/crypto/agreement-signatures.js';
import type { Agreement, DeviceSecretFile, PartySecretFile, Role } from '../../shared/protocol/schemas.js';

/** A two-ministry deployment made in memory: parties, agreement, and devices of every role. */
export interface TestDeployment {
  now: number;
  agreement: Agreement;
  logSecret: string;
  jp: PartySecretFile;
  cn: PartySecretFile;
  devices: Record<'jpOp' | 'jpOp2' | 'jpAud' | 'jpArc' | 'cnOp' | 'cnAud' | 'cnArc', DeviceSecretFile>;
}

export async function makeDeployment(now = Date.UTC(2026, 10, 30, 4, 0, 0)): Promise<TestDeployment> {
  const jp = createParty({ id: 'jp-mod', name: 'Japan Ministry of Defense', languages: ['ja', 'en'] });
  const cn = createParty({ id: 'cn-mnd', name: 'China Ministry of National Defense', languages: ['zh', 'en'] });
  const made = createAgreement({ name: 'jp-cn.hotline.example', parties: [jp.party, cn.party], now });
  const agreement = await signAgreementByAll(made.agreement, [jp, cn]);
  const logSecret = made.logSecret;
  const enrol = (p: PartySecretFile, device: string, role: Role) => enrollDevice(p, { device, role, now });
  const devices = {
    jpOp: await enrol(jp, 'jp-op-1', 'operator'),
    jpOp2: await enrol(jp, 'jp-op-2', 'operator'),
    jpAud: await enrol(jp, 'jp-audit-1', 'auditor'),
    jpArc: await enrol(jp, 'jp-archive', 'archive'),
    cnOp: await enrol(cn, 'cn-op-1', 'operator'),
    cnAud: await enrol(cn, 'cn-audit-1', 'auditor'),
    cnArc: await enrol(cn, 'cn-archive', 'archive'),
  };
  return { now, agreement, logSecret: logSecret!.logSecret, jp, cn, devices };
}
