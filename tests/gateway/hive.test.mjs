// End-to-end through a second gateway, Hive Gateway (`@graphql-hive/gateway`), over the same
// supergraph as `gateway.test.mjs` but with its security features kept: the gateway verifies
// the caller's JWT (the subgraph's secret) and enforces `@authenticated` / `@requiresScopes`
// itself, and its demand control prices every operation with the supergraph's `@cost` /
// `@listSize` and refuses the expensive ones, before any subgraph is asked. Every request the
// gateway sends to a subgraph is recorded, so each refusal is shown to stop at the gateway.
//
//   npm ci --prefix tests/gateway && cargo build && node --test tests/gateway/*.test.mjs

import { createServer } from 'node:http';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  createGatewayRuntime,
  createInlineSigningKeyProvider,
  extractFromHeader,
  useJWT,
} from '@graphql-hive/gateway';
import { GraphQLError, parse, visit } from 'graphql';

import { HOTELS, startAccommodation } from './accommodation.mjs';
import {
  client,
  codes,
  consumerOperations,
  JWT_SECRET,
  repo,
  ROUTER_SECRET,
  startImages,
  supergraph,
  token,
} from './harness.mjs';

/// The operation cost the gateway accepts: the subgraph's own budget (`QUERY_MAX_COMPLEXITY`)
/// and the `max` of the router configuration in the README.
const MAX_COST = 5000;

/// Every request the gateway sent to a subgraph: `{ subgraph, query, variables, headers }`.
const sent = [];
let images; // { url, stop }
let accommodation; // { url, stop }
let gateway; // { url, stop }

/// A field the caller may not see, answered the way the subgraph answers it (README, error
/// codes): `UNAUTHENTICATED` without a token, `FORBIDDEN` with a token that lacks the scope.
/// `fieldScopes` / `typeScopes` are the `@requiresScopes` alternatives (any one group, all of
/// its scopes); `@authenticated` alone only needs a token.
function authorize({ user, fieldAuthArgs, typeAuthArgs, fieldScopes, typeScopes, userScopes, fieldNode, path }) {
  const scopes = [fieldScopes, typeScopes].filter((groups) => groups?.length);
  if (!fieldAuthArgs && !typeAuthArgs && scopes.length === 0) return undefined;
  const refuse = (code, message) => new GraphQLError(message, { nodes: [fieldNode], path, extensions: { code } });
  if (user == null) return refuse('UNAUTHENTICATED', `${fieldNode.name.value} needs a token`);
  const allowed = scopes.every((groups) => groups.some((group) => group.every((s) => userScopes.includes(s))));
  return allowed ? undefined : refuse('FORBIDDEN', `${fieldNode.name.value} needs another scope`);
}

/// Hive Gateway configured as a deployment would run it in front of this subgraph.
async function startHiveGateway(urls) {
  const subgraphOf = (url) => Object.keys(urls).find((name) => url.startsWith(urls[name]));
  const runtime = createGatewayRuntime({
    supergraph: supergraph(urls),
    logging: process.env.E2E_VERBOSE ? 'debug' : 'error',
    plugins: () => [
      // Verifies the bearer token with the subgraph's HS256 secret; anonymous requests go on
      // (public reads), a bad token is refused.
      useJWT({
        signingKeyProviders: [createInlineSigningKeyProvider(JWT_SECRET)],
        tokenLookupLocations: [extractFromHeader({ name: 'authorization', prefix: 'Bearer' })],
        tokenVerification: { algorithms: ['HS256'] },
        reject: { missingToken: false, invalidToken: true },
      }),
      {
        onFetch({ url, options }) {
          const { query, variables } = JSON.parse(options.body);
          sent.push({ subgraph: subgraphOf(url), query, variables, headers: options.headers });
        },
      },
    ],
    // `@authenticated` / `@requiresScopes` from the supergraph, with the claims of the verified
    // token (`scope` is space-separated). Like Apollo Router, an unauthorized field is taken out
    // of the query with an error at its path, and the rest is answered.
    genericAuth: {
      mode: 'protect-granular',
      resolveUserFn: (context) => context.jwt?.payload,
      validateUser: authorize,
      rejectUnauthenticated: false,
    },
    // `@cost` / `@listSize` from the supergraph; lists without `@listSize` count 10 items.
    demandControl: { maxCost: MAX_COST, listSize: 10, includeExtensionMetadata: true },
    // What a router forwards (README, "What a router must send").
    propagateHeaders: {
      fromClientToSubgraphs: ({ request }) => ({
        authorization: request.headers.get('authorization'),
        'x-router-secret': ROUTER_SECRET,
      }),
    },
  });
  const server = createServer(runtime);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}/graphql`;
  const stop = async () => {
    await new Promise((resolve) => server.close(resolve));
    await runtime.dispose();
  };
  return { url, stop };
}

const ask = client(() => gateway.url, sent);

/// The subgraph requests among `requests` that went to the images subgraph.
const toImages = (requests) => requests.filter((r) => r.subgraph === 'images');

before(async () => {
  [images, accommodation] = await Promise.all([
    startImages(),
    startAccommodation(join(repo, 'schema', 'accommodation.graphql')),
  ]);
  gateway = await startHiveGateway({ images: images.url, accommodation: accommodation.url });
});

after(async () => {
  await Promise.allSettled([gateway?.stop(), accommodation?.stop(), images?.stop()]);
});

test('a search page gets every hotel’s main image from one _entities call', async () => {
  const { status, data, errors, sent } = await ask(`{
    searchHotels(city: "Lisbon") { id name mainImage { id url(size: SMALL) width height category } }
  }`);
  assert.equal(status, 200);
  assert.equal(errors, undefined, JSON.stringify(errors));
  const lisbon = HOTELS.filter((h) => h.city === 'Lisbon');
  assert.equal(data.searchHotels.length, lisbon.length);
  for (const hotel of data.searchHotels) {
    assert.match(hotel.mainImage.id, /^\d+$/, `hotel ${hotel.id} has a main image`);
    assert.match(hotel.mainImage.url, /\/w320\//, 'SMALL rendition');
  }
  assert.deepEqual(sent.map((r) => r.subgraph), ['accommodation', 'images'], 'one request per subgraph');
  const [entities] = toImages(sent);
  assert.match(entities.query, /_entities/);
  assert.deepEqual(
    entities.variables.representations.map((r) => r.id),
    data.searchHotels.map((h) => h.id),
    'all hotels in one _entities call',
  );
});

/// What each consumer operation needs: a token (`token` command arguments) and the fields the
/// gateway must keep from an anonymous caller. `SearchResultsMainImages` is the `_entities`
/// request a gateway itself sends; clients cannot send it (the test above is its gateway side).
const CONSUMERS = {
  HotelGallery: { token: null },
  SearchResultsMainImages: { gatewayOnly: true },
  HotelImagesOverview: { token: ['--scope', 'images:admin'], internal: ['version', 'mainImageChoice', 'images'] },
  ImageLookup: { token: ['--scope', 'images:admin'], internal: ['hotels', 'legacyIds'] },
  DeactivateImage: { token: ['--scope', 'images:admin'], internal: ['deactivateImage'] },
  ClassifyImages: { token: ['--scope', 'images:classify'], internal: ['classifyImages'] },
  ImportImages: { token: ['--scope', 'images:import', '--partner-id', '2'], internal: ['importImages'] },
  SetMainImage: { token: ['--scope', 'images:hotelier', '--hotel-ids', '1'], internal: ['setMainImage'] },
};

test('every consumer operation of schema/operations is listed here', () => {
  assert.deepEqual(consumerOperations().map((o) => o.name).sort(), Object.keys(CONSUMERS).sort());
});

test('every consumer operation runs through Hive Gateway with its token', async (t) => {
  for (const operation of consumerOperations()) {
    const needs = CONSUMERS[operation.name];
    if (needs.gatewayOnly) continue;
    await t.test(`${operation.team}/${operation.name}`, async () => {
      const bearer = needs.token && token(...needs.token);
      const { status, data, errors, extensions, sent } = await ask(operation.document, {
        variables: operation.variables,
        bearer,
      });
      assert.equal(status, 200);
      assert.equal(errors, undefined, JSON.stringify(errors));
      const roots = operation.document.match(/^  (\w+)(?::|\(| \{)/gm).map((root) => root.trim().replace(/[:( {]+$/, ''));
      assert.deepEqual(Object.keys(data), roots, 'every root field answered');
      assert.ok(toImages(sent).length >= 1, 'answered by the images subgraph');
      assert.ok(extensions.cost.estimated <= MAX_COST, `priced ${extensions.cost.estimated}`);
    });
  }
});

test('an anonymous caller is refused the internal fields and mutations by the gateway itself', async (t) => {
  for (const operation of consumerOperations()) {
    const needs = CONSUMERS[operation.name];
    if (!needs.internal) continue;
    await t.test(`${operation.team}/${operation.name}`, async () => {
      const { data, errors, sent } = await ask(operation.document, { variables: operation.variables });
      const refused = errors.filter((e) => e.extensions?.code === 'UNAUTHENTICATED');
      assert.deepEqual(
        refused.map((e) => e.path.at(-1)).sort(),
        [...needs.internal].sort(),
        JSON.stringify(errors),
      );
      for (const request of toImages(sent)) {
        const fields = fieldNames(request.query);
        for (const field of needs.internal) {
          assert.ok(!fields.has(field), `the subgraph was never asked for ${field}: ${request.query}`);
        }
      }
      assert.ok(!sent.some((r) => r.query.includes('mutation')), 'no mutation reached a subgraph');
      for (const field of needs.internal) assert.equal(findField(data, field) ?? null, null, field);
    });
  }
});

test('a public query asked anonymously is answered in full, internal parts refused alone', async () => {
  const { status, data, errors, sent } = await ask(
    '{ accommodation(id: "1") { name mainImage { id } version images(first: 5) { totalCount } } }',
  );
  assert.equal(status, 200);
  assert.deepEqual(codes(errors), ['UNAUTHENTICATED', 'UNAUTHENTICATED']);
  assert.deepEqual(errors.map((e) => e.path), [['accommodation', 'version'], ['accommodation', 'images']]);
  assert.equal(data.accommodation.name, 'Hotel Aurora');
  assert.match(data.accommodation.mainImage.id, /^\d+$/);
  const [entities] = toImages(sent);
  assert.match(entities.query, /mainImage/);
  assert.doesNotMatch(entities.query, /version|images/, 'the subgraph never saw the internal fields');
});

test('a token without the scope gets FORBIDDEN from the gateway; the right scope passes', async () => {
  const query = '{ hotel(id: "2") { id legacy: images(first: 1) { nodes { id legacyIds } } } }';
  const classifier = await ask(query, { bearer: token('--scope', 'images:classify') });

  assert.deepEqual(codes(classifier.errors), ['FORBIDDEN']);
  assert.deepEqual(classifier.errors[0].path, ['hotel', 'legacy']);
  assert.equal(classifier.data.hotel.id, '2');
  assert.doesNotMatch(toImages(classifier.sent)[0].query, /legacyIds|images/);

  // A hotelier passes the gateway for `Hotel.images` (the scope is right) but not for
  // `Image.legacyIds` (admins only); the hotel in `hotel_ids` is for the subgraph to check.
  const hotelier = await ask(query, { bearer: token('--scope', 'images:hotelier', '--hotel-ids', '2') });
  assert.deepEqual(codes(hotelier.errors), ['FORBIDDEN']);
  assert.deepEqual([hotelier.errors[0].path[0], hotelier.errors[0].path.at(-1)], ['hotel', 'legacyIds']);
  assert.equal(hotelier.data.hotel.legacy.nodes.length, 1);

  const admin = await ask(query, { bearer: token('--scope', 'images:admin') });
  assert.equal(admin.errors, undefined, JSON.stringify(admin.errors));
  assert.ok(Array.isArray(admin.data.hotel.legacy.nodes[0].legacyIds));
});

test('the subgraph still checks what no scope can express: a hotelier’s own hotels', async () => {
  // The gateway lets a hotelier's token through to `Hotel.version` of any hotel; the subgraph
  // refuses it for a hotel outside `hotel_ids`, and nothing of that hotel's internals reaches
  // the client. (README, "A second gateway": the code the client sees is not FORBIDDEN here.)
  const hotelier = token('--scope', 'images:hotelier', '--hotel-ids', '1');
  const other = await ask('{ hotel(id: "2") { id version mainImageChoice { origin } } }', { bearer: hotelier });
  assert.match(toImages(other.sent)[0].query, /version/, 'the gateway let it through');
  assert.equal(other.data.hotel?.version ?? null, null);
  assert.equal(other.data.hotel?.mainImageChoice ?? null, null);
  const own = await ask('{ hotel(id: "1") { id version mainImageChoice { origin } } }', { bearer: hotelier });
  assert.equal(own.errors, undefined, JSON.stringify(own.errors));
  assert.ok(own.data.hotel.version >= 1);
});

test('a bad token is refused by the gateway, never treated as anonymous', async () => {
  const forged = `${token('--scope', 'images:admin').slice(0, -4)}AAAA`;
  const { status, data, sent } = await ask('{ hotel(id: "1") { id } }', { bearer: forged });
  assert.equal(status, 401);
  assert.equal(data ?? null, null);
  assert.deepEqual(sent, []);
});

test('demand control prices lists by @listSize and slicing arguments, and refuses what costs too much', async () => {
  const admin = token('--scope', 'images:admin');
  // `Query.hotels` counts 100 hotels (`@listSize(assumedSize: 100)`), each with `first`
  // gallery images (the slicing argument) and their 5 tags (`@listSize(assumedSize: 5)`):
  // 100 × (hotel + connection + first × (image + 5 tags)).
  const gallery = (first) => `{ hotels(ids: ["1", "2"]) { id gallery(first: ${first}) { nodes { id tags { category } } } } }`;
  const small = await ask(gallery(1), { bearer: admin });
  const large = await ask(gallery(4), { bearer: admin });
  assert.equal(small.errors, undefined, JSON.stringify(small.errors));
  assert.equal(large.errors, undefined, JSON.stringify(large.errors));
  assert.deepEqual(
    [small.extensions.cost.estimated, large.extensions.cost.estimated],
    [100 * (2 + 1 * 6), 100 * (2 + 4 * 6)],
  );

  // 100 × (2 + 100 × 6) = 60,200: far over the budget.
  const expensive = await ask(gallery(100), { bearer: admin });
  assert.deepEqual(codes(expensive.errors), ['COST_ESTIMATED_TOO_EXPENSIVE'], JSON.stringify(expensive.errors));
  assert.equal(expensive.data ?? null, null);
  assert.deepEqual(expensive.sent, [], 'no subgraph was asked');

  // `@cost(weight: 5)` on `Hotel.images`: Hive Gateway adds the weight to the cost of the
  // field's type and list (`Hotel.gallery`, the same shape, has no weight).
  const weighted = await ask('{ hotel(id: "1") { images(first: 1) { nodes { id } } } }', { bearer: admin });
  const plain = await ask('{ hotel(id: "1") { gallery(first: 1) { nodes { id } } } }', { bearer: admin });
  assert.equal(
    weighted.extensions.cost.estimated - plain.extensions.cost.estimated,
    5,
    JSON.stringify([weighted.extensions, plain.extensions]),
  );
});

/// Every field name selected in `query`.
function fieldNames(query) {
  const names = new Set();
  visit(parse(query), { Field: (node) => void names.add(node.name.value) });
  return names;
}

/// The value at the first key `field` anywhere in `data` (undefined when there is none).
function findField(data, field) {
  if (data === null || typeof data !== 'object') return undefined;
  if (field in data) return data[field];
  for (const value of Object.values(data)) {
    const found = findField(value, field);
    if (found !== undefined) return found;
  }
  return undefined;
}
