// End-to-end through a federation gateway: the images subgraph (the real binary on a fresh
// SQLite database with the demo catalog), the small accommodation subgraph of
// `accommodation.mjs`, and @apollo/gateway over the supergraph that `schema/compose.mjs`
// composes. Consumer queries go to the gateway over HTTP; every request the gateway sends to a
// subgraph is recorded, so the tests can check how a query was planned. `hive.test.mjs` does the
// same behind Hive Gateway, which also enforces the supergraph's authorization and cost
// directives itself.
//
//   npm ci --prefix tests/gateway && cargo build && node --test tests/gateway/*.test.mjs

import { join } from 'node:path';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { ApolloGateway, RemoteGraphQLDataSource } from '@apollo/gateway';
import { ApolloServer } from '@apollo/server';
import { startStandaloneServer } from '@apollo/server/standalone';

import { SUBGRAPHS } from '../../schema/compose.mjs';
import { HOTELS, startAccommodation } from './accommodation.mjs';
import { client, codes, repo, ROUTER_SECRET, startImages, supergraph, token } from './harness.mjs';

/// Every request the gateway sent to a subgraph: `{ subgraph, query, variables }`.
const sent = [];
let images; // { url, stop }
let accommodation; // { url, stop }
let gateway; // { url, stop }

/// Forwards what a router forwards (DESIGN section 8, README "Federation"): the caller's
/// `authorization`, and the shared secret that proves the request comes from the router.
class RouterLikeDataSource extends RemoteGraphQLDataSource {
  constructor(name, url) {
    super({ url });
    this.name = name;
  }

  willSendRequest({ request, context }) {
    if (context.authorization) request.http.headers.set('authorization', context.authorization);
    request.http.headers.set('x-router-secret', ROUTER_SECRET);
    sent.push({ subgraph: this.name, query: request.query, variables: request.variables });
  }
}

/// @apollo/gateway cannot enforce `@authenticated` / `@requiresScopes` (Apollo Router and Hive
/// Gateway do) and has no response cache for `@cacheTag`, so it refuses a supergraph that links
/// them `for: SECURITY` / `for: EXECUTION`. Dropping that purpose leaves the directives as inert
/// metadata: behind this gateway the subgraph alone enforces authorization, which is what the
/// tests below check.
function withoutRouterOnlyFeatures(supergraphSdl) {
  const links = /(@link\(url: "https:\/\/specs\.apollo\.dev\/(?:authenticated|requiresScopes|cacheTag)\/v[\d.]+"), for: (?:SECURITY|EXECUTION)\)/g;
  assert.equal(supergraphSdl.match(links)?.length, 3, 'the supergraph links both security features and cache tags');
  return supergraphSdl.replace(links, '$1)');
}

async function startGateway(urls) {
  const server = new ApolloServer({
    gateway: new ApolloGateway({
      supergraphSdl: withoutRouterOnlyFeatures(supergraph(urls)),
      buildService: ({ name }) => new RouterLikeDataSource(name, urls[name]),
    }),
  });
  const { url } = await startStandaloneServer(server, {
    listen: { host: '127.0.0.1', port: 0 },
    context: async ({ req }) => ({ authorization: req.headers.authorization }),
  });
  return { url, stop: () => server.stop() };
}

/// Sends `query` to the gateway; returns its answer and the subgraph requests it caused.
const askGateway = client(() => gateway.url, sent);
async function ask(query, options) {
  const answer = await askGateway(query, options);
  assert.equal(answer.status, 200);
  return answer;
}

before(async () => {
  const names = SUBGRAPHS.map((s) => s.name);
  assert.deepEqual(names, ['images', 'accommodation']);
  [images, accommodation] = await Promise.all([
    startImages(),
    startAccommodation(join(repo, 'schema', 'accommodation.graphql')),
  ]);
  gateway = await startGateway({ images: images.url, accommodation: accommodation.url });
});

after(async () => {
  await Promise.allSettled([gateway?.stop(), accommodation?.stop(), images?.stop()]);
});

test('a search page gets every hotel’s main image from one _entities call', async () => {
  const { data, errors, sent } = await ask(`{
    searchHotels(city: "Lisbon") { id name city mainImage { id url(size: SMALL) } }
  }`);
  assert.equal(errors, undefined);
  const lisbon = HOTELS.filter((h) => h.city === 'Lisbon');
  assert.equal(data.searchHotels.length, lisbon.length);
  assert.equal(data.searchHotels[0].name, 'Palácio Verde', 'best first, from accommodation');
  for (const hotel of data.searchHotels) {
    assert.equal(hotel.city, 'Lisbon');
    assert.match(hotel.mainImage.id, /^\d+$/, `hotel ${hotel.id} has a main image`);
    assert.match(hotel.mainImage.url, /\/w320\//, 'SMALL rendition');
  }
  assert.deepEqual(
    sent.map((r) => r.subgraph),
    ['accommodation', 'images'],
    'one request per subgraph',
  );
  const [, entities] = sent;
  assert.match(entities.query, /_entities/);
  assert.deepEqual(
    entities.variables.representations.map((r) => r.id),
    data.searchHotels.map((h) => h.id),
    'all hotels in one _entities call',
  );
});

test('a hotel page shows its name, its main image and its gallery led by the main image', async () => {
  const { data, errors } = await ask(`{
    accommodation(id: "3") {
      name stars imageCount
      mainImage { id url(size: XLARGE) }
      gallery(first: 5) {
        totalCount
        pageInfo { hasNextPage endCursor }
        edges { cursor node { id url(size: THUMBNAIL) width height category } }
      }
    }
  }`);
  assert.equal(errors, undefined);
  const hotel = data.accommodation;
  assert.equal(hotel.name, 'Palácio Verde');
  assert.ok(hotel.imageCount >= 5, `${hotel.imageCount} images`);
  assert.equal(hotel.gallery.edges.length, 5);
  assert.equal(hotel.gallery.edges[0].node.id, hotel.mainImage.id, 'the gallery opens with the main image');
  assert.ok(hotel.gallery.totalCount >= 5);
  for (const { node } of hotel.gallery.edges) {
    assert.match(node.url, /\/c160\//, 'THUMBNAIL rendition');
    assert.ok(!['LOGO', 'MAP'].includes(node.category));
  }
});

test('a hotel asked from the images subgraph gets its name from the accommodation subgraph', async () => {
  const { data, errors, sent } = await ask('{ hotel(id: "7") { id name city imageCount } }');
  assert.equal(errors, undefined);
  assert.deepEqual({ ...data.hotel, imageCount: undefined }, {
    id: '7', name: 'Alfama Suites', city: 'Lisbon', imageCount: undefined,
  });
  assert.ok(data.hotel.imageCount > 0);
  assert.deepEqual(sent.map((r) => r.subgraph), ['images', 'accommodation']);
});

test('internal fields answer an admin token forwarded by the gateway, and nobody without it', async () => {
  const query = '{ accommodation(id: "1") { name images(first: 5) { totalCount nodes { id status } } } }';
  const admin = await ask(query, { bearer: token('--scope', 'images:admin') });
  assert.equal(admin.errors, undefined);
  assert.ok(admin.data.accommodation.images.totalCount >= 5);
  assert.equal(admin.data.accommodation.images.nodes.length, 5);

  const anonymous = await ask(query);
  assert.equal(anonymous.data.accommodation, null);
  assert.deepEqual(codes(anonymous.errors), ['UNAUTHENTICATED'], 'no token: the client must log in');
});

test('a hotelier token opens the internal fields of its own hotels only', async () => {
  const hotelier = token('--scope', 'images:hotelier', '--hotel-ids', '1');
  const query = '{ accommodation(id: $id) { version images(first: 3) { totalCount } } }';
  const own = await ask(query.replace('$id', '"1"'), { bearer: hotelier });
  assert.equal(own.errors, undefined);
  assert.ok(own.data.accommodation.version >= 1);
  const other = await ask(query.replace('$id', '"2"'), { bearer: hotelier });
  assert.equal(other.data.accommodation, null);
  assert.ok(codes(other.errors).every((code) => code === 'FORBIDDEN'), JSON.stringify(other.errors));
});

test('a hotelier sets the main image of their hotel through the gateway, and only of theirs', async () => {
  const hotelier = token('--scope', 'images:hotelier', '--hotel-ids', '1');
  const read = '{ accommodation(id: $id) { version mainImage { id } gallery(first: 5) { nodes { id } } } }';
  const before = await ask(read.replace('$id', '"1"'), { bearer: hotelier });
  assert.equal(before.errors, undefined);
  const { version, gallery } = before.data.accommodation;
  const chosen = gallery.nodes[2].id;
  const mutation = `mutation($input: SetMainImageInput!) {
    setMainImage(input: $input) { hotel { id version mainImage { id } } userErrors { code } }
  }`;
  const set = await ask(mutation, {
    bearer: hotelier,
    variables: { input: { hotelId: '1', imageId: chosen, expectedVersion: version } },
  });
  assert.equal(set.errors, undefined, JSON.stringify(set.errors));
  assert.deepEqual(set.data.setMainImage.userErrors, []);
  assert.equal(set.data.setMainImage.hotel.mainImage.id, chosen);
  assert.equal(set.data.setMainImage.hotel.version, version + 1);
  const after = await ask('{ accommodation(id: "1") { name mainImage { id } } }');
  assert.equal(after.data.accommodation.mainImage.id, chosen, 'visible in the very next query');

  const other = await ask(read.replace('$id', '"2"'), { bearer: token('--scope', 'images:admin') });
  const refused = await ask(mutation, {
    bearer: hotelier,
    variables: { input: { hotelId: '2', imageId: other.data.accommodation.gallery.nodes[1].id } },
  });
  assert.deepEqual(codes(refused.errors), ['FORBIDDEN']);
  const unchanged = await ask(read.replace('$id', '"2"'), { bearer: token('--scope', 'images:admin') });
  assert.deepEqual(unchanged.data, other.data, 'nothing changed');
});

test('a JSON array batch, as a router with subgraph batching sends it, gets an array of answers', async () => {
  const response = await fetch(images.url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json',
      authorization: `Bearer ${token('--scope', 'images:admin')}`,
      'x-router-secret': ROUTER_SECRET,
    },
    body: JSON.stringify([
      {
        query: 'query($r: [_Any!]!) { _entities(representations: $r) { ... on Hotel { id mainImage { id } } } }',
        variables: { r: [{ __typename: 'Hotel', id: '1' }, { __typename: 'Hotel', id: '2' }] },
      },
      { query: '{ hotel(id: "2") { id version } }' },
    ]),
  });
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type'), /^application\/json/);
  const [entities, hotel] = await response.json();
  assert.deepEqual(entities.data._entities.map((h) => h.id), ['1', '2']);
  assert.ok(entities.data._entities.every((h) => h.mainImage.id));
  assert.equal(hotel.data.hotel.id, '2');
  assert.ok(hotel.data.hotel.version >= 1, 'the token applies to every operation of the batch');
});

test('the subgraph answers only the router when a router secret is set', async () => {
  const response = await fetch(images.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query: '{ hotel(id: "1") { id } }' }),
  });
  assert.equal(response.status, 403);
});
