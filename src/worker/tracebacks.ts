/** A line of output, or a whole traceback with the Error that carries it (for pino's `err`). */
export type Emit = (line: string, err?: Error) => void;

const START = /^\s*(?:\+ )?(?:Exception Group )?Traceback \(most recent call last\):$/;
const CHAIN = /^(During handling of the above exception, another exception occurred:|The above exception was the direct cause of the following exception:)$/;
/** A traceback still without its end waits this long for more lines before it is logged as it is. */
const QUIET_MS = 50;
const MAX_LINES = 1000;

/**
 * The Error a traceback is logged as: its type is the Python exception's (pino's serializer names
 * `err.type` after the constructor), its message the exception's, its stack the whole traceback.
 */
function tracebackError(lines: readonly string[]): { line: string; err: Error } {
  // The exception line: not indented once an exception group's "  | " is taken off; a group's own is its first, a chain's the last.
  const found = lines.map((l) => l.replace(/^\s*\| /, '')).filter((l) => /^[A-Za-z_][\w.]*(?::|$)/.test(l) && !START.test(l) && !CHAIN.test(l));
  const last = (lines[0].includes('+ ') ? found[0] : found.at(-1)) ?? lines[0];
  const m = /^([A-Za-z_][\w.]*)(?:: (.*))?$/.exec(last);
  const type = m?.[1] ?? 'Traceback';
  const Named = { [type]: class extends Error {} }[type];
  const err = new Named(m?.[2] ?? last);
  err.stack = lines.join('\n');
  return { line: last, err };
}

/**
 * Groups the lines of a worker's stderr so that a Python traceback, chained ones included, is one
 * record: from `Traceback (most recent call last):` through its indented frames to the exception
 * line, and on through "During handling of the above exception..." while the chain goes on. Any
 * other line passes at once; a traceback is logged when the next line does not belong to it, when
 * the stream ends (`end`), or after QUIET_MS without more.
 */
export function groupTracebacks(emit: Emit): { line(text: string): void; end(): void } {
  let block: string[] | null = null;
  // Whether the block reached its exception line: then only a blank line, a chain or a new traceback continues it.
  let ended = false;
  // An exception group's traceback is indented throughout ("  + ...", "  | ..."): its first unindented line is not its own.
  let group = false;
  let timer: NodeJS.Timeout | null = null;
  const flush = (): void => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    if (block === null) return;
    while (block.length > 1 && block.at(-1) === '') block.pop();
    const { line, err } = tracebackError(block);
    block = null;
    emit(line, err);
  };
  const start = (text: string): void => {
    ended = false;
    group = /^\s/.test(text);
  };
  const line = (text: string): void => {
    if (block !== null) {
      const indented = text === '' || /^\s/.test(text);
      if ((group ? indented : !ended || text === '' || CHAIN.test(text) || START.test(text)) && block.length < MAX_LINES) {
        block.push(text);
        if (START.test(text)) start(text);
        else if (!indented) ended = true;
        if (timer !== null) clearTimeout(timer);
        timer = setTimeout(flush, QUIET_MS).unref();
        return;
      }
      flush();
    }
    if (START.test(text)) {
      block = [text];
      start(text);
      timer = setTimeout(flush, QUIET_MS).unref();
    } else emit(text);
  };
  return { line, end: flush };
}
