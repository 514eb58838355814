// Which packages of a bundle actually ran: V8's precise coverage of the bundle (from a
// fresh process that imported it and rotated) mapped back to source files through an
// esbuild source map of the identical build. A package "ran" when at least one function
// that starts in one of its files was called; esbuild wraps every lazily initialised
// module in such a function, so an SDK that was only bundled, never loaded, shows none.

export interface SourceMap {
  sources: string[];
  mappings: string;
}

export interface FunctionCoverage {
  functionName: string;
  ranges: { startOffset: number; endOffset: number; count: number }[];
}

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_VALUE = new Map([...B64].map((c, i) => [c, i]));

/** Per generated line: [generated column, source index] pairs in column order. */
function decodeMappings(mappings: string): [number, number][][] {
  const lines: [number, number][][] = [];
  let source = 0;
  // Source line/column/name fields are decoded only to keep the running state right.
  for (const line of mappings.split(";")) {
    const segments: [number, number][] = [];
    let column = 0;
    for (const segment of line.split(",")) {
      if (!segment) continue;
      const fields: number[] = [];
      let value = 0;
      let shift = 0;
      for (const ch of segment) {
        const digit = B64_VALUE.get(ch);
        if (digit === undefined) throw new Error(`bad source map character "${ch}"`);
        value += (digit & 31) << shift;
        if (digit & 32) {
          shift += 5;
        } else {
          fields.push(value & 1 ? -(value >>> 1) : value >>> 1);
          value = 0;
          shift = 0;
        }
      }
      column += fields[0] ?? 0;
      if (fields.length >= 4) {
        source += fields[1]!;
        segments.push([column, source]);
      }
    }
    lines.push(segments);
  }
  return lines;
}

/** The npm package (or our folder, e.g. `lib/stores`) a source path belongs to. */
export function packageOf(source: string): string {
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(source);
  if (m) return m[1]!;
  return source.replace(/^(\.\.\/)+/, "").split("/").slice(0, 2).join("/");
}

/** Packages with at least one called function, from coverage of `code` built with `map`. */
export function executedPackages(code: string, map: SourceMap, functions: readonly FunctionCoverage[]): string[] {
  const lines = decodeMappings(map.mappings);
  const lineStarts = [0];
  for (let i = code.indexOf("\n"); i !== -1; i = code.indexOf("\n", i + 1)) lineStarts.push(i + 1);
  const position = (offset: number): [number, number] => {
    let lo = 0;
    let hi = lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (lineStarts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return [lo, offset - lineStarts[lo]!];
  };
  // The first mapped token inside the function: a module wrapper's own header is esbuild's, its body is the module's.
  const sourceIn = (startOffset: number, endOffset: number): string | undefined => {
    const [startLine, startColumn] = position(startOffset);
    const [endLine, endColumn] = position(endOffset);
    for (let line = startLine; line <= endLine; line++) {
      const segments = lines[line] ?? [];
      let lo = 0;
      let hi = segments.length;
      const from = line === startLine ? startColumn : 0;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (segments[mid]![0] < from) lo = mid + 1;
        else hi = mid;
      }
      const segment = segments[lo];
      if (!segment) continue;
      if (line === endLine && segment[0] >= endColumn) return undefined;
      return map.sources[segment[1]];
    }
    return undefined;
  };
  const packages = new Set<string>();
  for (const fn of functions) {
    const range = fn.ranges[0];
    // The script's own top-level range spans the whole file: it says nothing about a package.
    if (!range || range.count === 0 || (range.startOffset === 0 && range.endOffset >= code.length - 1)) continue;
    const source = sourceIn(range.startOffset, range.endOffset);
    if (source) packages.add(packageOf(source));
  }
  return [...packages].sort();
}
