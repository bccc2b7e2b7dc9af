// The composition check: composes this subgraph's SDL (`schema.graphql`, as published) with the
// neighbouring subgraphs' SDL (copies in this folder) into one supergraph, the way the schema
// registry and Apollo Router would; then again beside typical neighbours (`neighbours/`: one
// with the standard Relay `PageInfo`, one with a `UserError` of its own), whose generic type
// names must not clash with ours.
//
//   node schema/compose.mjs                  prints composition hints; exits 1 on any error
//   node schema/compose.mjs --out FILE       also writes the supergraph SDL to FILE
//
// `npm ci --prefix schema` installs the pinned @apollo/composition first.

import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

import { composeServices } from '@apollo/composition';
import { parse } from 'graphql';

const here = dirname(fileURLToPath(import.meta.url));

/// The subgraphs of the supergraph. The URLs are placeholders: a router (or the gateway test)
/// points each subgraph name at its real address.
export const SUBGRAPHS = [
  { name: 'images', file: join(here, '..', 'schema.graphql'), url: 'http://images.invalid/graphql' },
  { name: 'accommodation', file: join(here, 'accommodation.graphql'), url: 'http://accommodation.invalid/graphql' },
];

/// Typical neighbours, composed by the check only (the gateway test serves `SUBGRAPHS`).
export const NEIGHBOURS = ['reviews', 'bookings'].map((name) => ({
  name,
  file: join(here, 'neighbours', `${name}.graphql`),
  url: `http://${name}.invalid/graphql`,
}));

/// Composes the subgraphs: `{ supergraphSdl, hints }` or `{ errors, hints }`.
export function compose(subgraphs = SUBGRAPHS) {
  const result = composeServices(
    subgraphs.map(({ name, file, url }) => ({ name, url, typeDefs: parse(readFileSync(file, 'utf8')) })),
  );
  return {
    supergraphSdl: result.supergraphSdl,
    errors: result.errors ?? [],
    hints: result.hints ?? [],
  };
}

/// Composes `subgraphs` and reports; false on any error.
function check(subgraphs) {
  const names = subgraphs.map((s) => s.name).join(' + ');
  const { supergraphSdl, errors, hints } = compose(subgraphs);
  for (const hint of hints) {
    console.log(`hint ${hint.definition.code}: ${hint.message}`);
  }
  if (errors.length > 0) {
    for (const error of errors) {
      console.error(`error ${error.extensions?.code ?? ''}: ${error.message}`);
    }
    console.error(`composing ${names} failed with ${errors.length} error(s)`);
    return { ok: false };
  }
  console.log(`composed ${names}: ${hints.length} hint(s), no errors`);
  return { ok: true, supergraphSdl };
}

function main() {
  const { values } = parseArgs({ options: { out: { type: 'string' } } });
  const served = check(SUBGRAPHS);
  const beside = check([...SUBGRAPHS, ...NEIGHBOURS]);
  if (!served.ok || !beside.ok) {
    process.exit(1);
  }
  if (values.out) {
    writeFileSync(values.out, served.supergraphSdl);
    console.log(`supergraph written to ${values.out}`);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main();
}
