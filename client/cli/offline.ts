import { HotlineError } from '../../shared/errors.js';
import { agreementHash, verifyDeviceCertificate } from '../../shared/crypto/keys.js';
import { verifyDirectory, type DirectoryEntries, type VerifiedDirectory } from '../../shared/crypto/directory.js';
import { expectedRecipients, openEnvelope, sealEnvelope } from '../../shared/crypto/envelope.js';
import { signReceipt } from '../../shared/crypto/receipt.js';
import { randomId } from '../../shared/crypto/random.js';
import { assertSchema } from '../../shared/protocol/validate.js';
import { Envelope, PRECEDENCES, type Agreement, type DeviceCertificate, type Precedence } from '../../shared/protocol/schemas.js';
import { FileStorage } from '../storage/file-storage.js';
import {
  defaultStatePath,
  loadAgreement,
  loadDevice,
  parse,
  printHelp,
  readJson,
  required,
  usage,
  writePublicFile,
  type Command,
} from './common.js';
import { messageJson, messageText } from './link.js';
import { readAttachments, saveAttachments } from './content.js';
import { requireCatalogueEntry } from '../../shared/protocol/catalogue.js';
import { checkAddressee } from './recipients.js';
import { checkPeersConfirmed } from './peers.js';

/** The file `hotline seal` writes: the envelope and the sender's certificate (verifiable against the agreement). */
interface SealedFile {
  type: 'hotline-sealed';
  v: 1;
  envelope: Envelope;
  senderCertificate: DeviceCertificate;
}

interface DirectoryFile {
  certificates: unknown[];
  revocations: unknown[];
  agreementHash?: string;
}

const OFFLINE_FLAGS = {
  device: { type: 'string' },
  agreement: { type: 'string' },
  state: { type: 'string' },
  directory: { type: 'string' },
} as const;

export const seal: Command = {
  name: 'seal',
  summary: 'seal a message to a file (backup channel, no relay needed)',
  help: `Usage: hotline seal --device FILE --to PARTY --precedence P --directory FILE --out FILE TEXT
                   [--subject S] [--lang L] [--exercise] [--attach FILE ...] [--code C]
                   [--agreement FILE] [--state FILE]

Seals the same signed, end-to-end encrypted envelope as \`hotline send\`, but writes it to a file
for any other channel (mail, a USB stick). The recipients' certificates come from a directory file
(\`hotline directory\`, fetched earlier), verified here against the agreement; without --directory,
the directory this device last fetched is used. The seq comes from the device's state file, so an
envelope sealed offline never reuses one.

  --device FILE      the device key file
  --to PARTY         the addressee party
  --precedence P     flash, immediate, priority or routine
  --directory FILE   a directory file from hotline directory
  --out FILE         where to write the sealed envelope
  --attach FILE      attach FILE, as for hotline send (repeat, at most 8; 30 KiB in all)
  --code C           send the agreement's catalogue entry C, as for hotline send
  --agreement FILE   the pinned agreement (or HOTLINE_AGREEMENT)
  --state FILE       the device's state file (default DEVICE.state.json)`,
  async run(argv, io) {
    const { values, positionals } = parse(
      'seal',
      argv,
      {
        ...OFFLINE_FLAGS,
        to: { type: 'string' },
        precedence: { type: 'string' },
        out: { type: 'string' },
        subject: { type: 'string' },
        lang: { type: 'string' },
        exercise: { type: 'boolean' },
        attach: { type: 'string', multiple: true },
        code: { type: 'string' },
      },
      true,
    );
    if (values.help) return printHelp(io, this.help);
    required('seal', values, 'device', 'to', 'precedence', 'out');
    const precedence = values.precedence!.toUpperCase() as Precedence;
    if (!PRECEDENCES.includes(precedence)) throw usage(`--precedence must be flash, immediate, priority or routine, got "${values.precedence}"`);
    let body = positionals.join(' ');
    if (body === '-') body = await io.readStdin();
    if (body.trim() === '' && values.code === undefined) throw usage('hotline seal needs the message TEXT (or - for stdin), or --code C');
    const attachments = values.attach === undefined ? undefined : readAttachments(values.attach);
    const device = loadDevice(values.device!, io);
    const me = device.certificate.cert;
    if (me.role !== 'operator') throw new HotlineError('HL_ERR_AUTH_FORBIDDEN', `${me.party}/${me.device} is an ${me.role} device; only operator devices send`);
    const { agreement } = await loadAgreement(values.agreement, io, values.device);
    if (values.code !== undefined) requireCatalogueEntry(agreement, values.code);
    const party = agreement.parties.find((p) => p.id === values.to);
    if (!party || party.id === me.party) throw usage(`--to must be another party of the agreement: ${agreement.parties.map((p) => p.id).filter((p) => p !== me.party).join(', ')}`);
    const storage = new FileStorage(values.state ?? defaultStatePath(values.device!));
    const key = `${me.party}/${me.device}`;
    const dir: DirectoryFile | undefined = values.directory !== undefined ? (readJson(values.directory, 'directory file') as DirectoryFile) : (await storage.read(key)).directory;
    if (!dir || !Array.isArray(dir.certificates) || !Array.isArray(dir.revocations)) {
      throw usage('no directory: pass --directory FILE (from hotline directory), or connect this device once (hotline listen/send)');
    }
    if (dir.agreementHash !== undefined && dir.agreementHash !== agreementHash(agreement)) {
      throw new HotlineError('HL_ERR_AGREEMENT_MISMATCH', `${values.directory} was fetched under another agreement`);
    }
    const valid = (await verifiedFile(agreement, dir)).bodies();
    checkAddressee(valid, me, party.id, io);
    checkPeersConfirmed(valid, me, party.id, values.device!);
    const recipients = expectedRecipients(valid, me, party.id);
    const mine = agreement.parties.find((p) => p.id === me.party);
    const seq = await storage.update(key, (s) => ++s.lastSeq);
    const envelope = await sealEnvelope({
      sender: device,
      id: randomId(),
      to: party.id,
      precedence,
      seq,
      sentAt: Date.now(),
      recipients,
      plaintext: {
        body,
        lang: values.lang ?? mine?.languages[0] ?? 'en',
        ...(values.subject === undefined ? {} : { subject: values.subject }),
        ...(values.code === undefined ? {} : { code: values.code }),
        ...(attachments === undefined ? {} : { attachments }),
      },
      ...(values.exercise ? { exercise: true } : {}),
    });
    const file: SealedFile = { type: 'hotline-sealed', v: 1, envelope, senderCertificate: device.certificate };
    writePublicFile(values.out!, file);
    io.out(envelope.header.id);
    io.err(`sealed for ${recipients.map((c) => `${c.party}/${c.device}`).join(', ')}: ${values.out}`);
    return 0;
  },
};

export const open: Command = {
  name: 'open',
  summary: 'verify and decrypt a sealed envelope file',
  help: `Usage: hotline open --device FILE ENVELOPE_FILE [--json] [--receipt-out FILE]
                   [--save-attachments DIR] [--directory FILE] [--agreement FILE]

Verifies an envelope file written by \`hotline seal\` (the sender's certificate against the pinned
agreement, and against the revocations of --directory when given; the signature; the key
commitment) and prints the message. With --receipt-out, also writes this device's signed
"delivered" receipt, to be returned to the sender by the same channel.

  --device FILE        the device key file
  --json               print the message as one JSON object
  --receipt-out FILE   write a signed delivered receipt
  --save-attachments DIR
                       save the attachments in DIR under safe names, never overwriting a file
  --directory FILE     a directory file, for its revocations
  --agreement FILE     the pinned agreement (or HOTLINE_AGREEMENT)`,
  async run(argv, io) {
    const { values, positionals } = parse('open', argv, { ...OFFLINE_FLAGS, json: { type: 'boolean' }, 'receipt-out': { type: 'string' }, 'save-attachments': { type: 'string' } }, true);
    if (values.help) return printHelp(io, this.help);
    required('open', values, 'device');
    if (positionals.length !== 1) throw usage('hotline open needs exactly one ENVELOPE_FILE\nRun: hotline open --help');
    const path = positionals[0]!;
    const device = loadDevice(values.device!, io);
    const { agreement } = await loadAgreement(values.agreement, io, values.device);
    const file = readJson(path, 'envelope file') as Partial<SealedFile>;
    if (file?.type !== 'hotline-sealed') throw new HotlineError('HL_ERR_ENVELOPE_MALFORMED', `${path} is not a sealed envelope file (from hotline seal)`);
    const envelope = assertSchema(Envelope, file.envelope, 'HL_ERR_ENVELOPE_MALFORMED');
    const dir = values.directory === undefined ? undefined : (readJson(values.directory, 'directory file') as DirectoryFile);
    const { isRevoked } = await verifiedFile(agreement, { certificates: [], revocations: dir?.revocations ?? [] });
    const senderCert = await verifyDeviceCertificate(agreement, file.senderCertificate, { now: Date.now(), isRevoked, roles: ['operator'] });
    const opened = await openEnvelope(envelope, { device, senderCert });
    const hash = opened.envelopeHash;
    const saveDir = values['save-attachments'];
    const saved = saveDir !== undefined && opened.plaintext.attachments !== undefined ? saveAttachments(saveDir, opened.plaintext.attachments) : undefined;
    const content = { view: { agreement, party: device.certificate.cert.party }, ...(saved ? { saved } : {}) };
    io.out(values.json ? JSON.stringify(messageJson({ ...opened, envelopeHash: hash }, content)) : messageText(opened, undefined, undefined, content));
    if (values['receipt-out'] !== undefined) {
      const me = device.certificate.cert;
      if (opened.header.to !== me.party || me.role !== 'operator') {
        throw new HotlineError('HL_ERR_AUTH_FORBIDDEN', `only operator devices of ${opened.header.to} answer this message`);
      }
      const receipt = await signReceipt(device, opened.header, 'delivered', Date.now(), hash);
      writePublicFile(values['receipt-out'], { type: 'hotline-receipt', v: 1, receipt, signerCertificate: device.certificate });
      io.err(`signed delivered receipt: ${values['receipt-out']}`);
    }
    return 0;
  },
};

/**
 * A directory file verified against the agreement now. Certificates that fail are left out (never
 * encrypt to them); a revocation that fails refuses the whole file, since the file cannot then be
 * trusted to say which devices are revoked.
 */
async function verifiedFile(agreement: Agreement, dir: DirectoryEntries): Promise<VerifiedDirectory> {
  const verified = await verifyDirectory(agreement, dir, { now: Date.now() });
  const forged = verified.rejected.find((r) => r.kind === 'revocation');
  if (forged) throw forged.error;
  return verified;
}
