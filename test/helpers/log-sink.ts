import { Writable } from 'node:stream';

/** An in-memory pino destination: every line the logger writes, for tests that read the log. */
export class LogSink extends Writable {
  readonly lines: string[] = [];

  constructor() {
    super({ decodeStrings: false });
  }

  override _write(chunk: string | Buffer, _enc: BufferEncoding, done: (error?: Error | null) => void): void {
    for (const line of chunk.toString().split('\n')) {
      if (line.trim() === '') continue;
      this.lines.push(line);
      this.emit('line', line);
    }
    done();
  }

  /** Wait until `count` lines (default 1) written so far match `pred` (parsed record). */
  async waitFor(pred: (record: Record<string, unknown>) => boolean, count = 1, timeoutMs = 20_000): Promise<void> {
    const matches = () => this.records().filter(pred).length >= count;
    if (matches()) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off('line', onLine);
        reject(new Error(`log: ${count} matching lines not written within ${timeoutMs} ms`));
      }, timeoutMs);
      const onLine = () => {
        if (!matches()) return;
        clearTimeout(timer);
        this.off('line', onLine);
        resolve();
      };
      this.on('line', onLine);
    });
  }

  /** Parsed records. */
  records(): Record<string, unknown>[] {
    return this.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  text(): string {
    return this.lines.join('\n');
  }
}
