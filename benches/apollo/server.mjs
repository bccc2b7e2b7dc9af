// B2, the conventional peer: Apollo Server 5 + @apollo/subgraph + dataloader + pg, serving the
// consumer operations `SearchResultsMainImages` (`_entities` → Hotel.mainImage) and
// `HotelGallery` from the same PostgreSQL tables as the subgraph, the way a team would write it:
// request-scoped DataLoaders batching by ID with `= ANY($1)`, one pool of the same size.
//
// Env: DATABASE_URL (postgres://...), PORT (default 4100), POOL_SIZE (default 16),
// CDN_BASE_URL (default https://images.example.com), IMAGE_SIZES (default 160,320,640,1024,1600).
import { ApolloServer } from '@apollo/server';
import { startStandaloneServer } from '@apollo/server/standalone';
import { buildSubgraphSchema } from '@apollo/subgraph';
import DataLoader from 'dataloader';
import gql from 'graphql-tag';
import { createServer } from 'node:http';
import pg from 'pg';

const pool = new pg.Pool({
  connectionString: process.env.DATABASE_URL,
  max: Number(process.env.POOL_SIZE ?? 16),
});
const base = (process.env.CDN_BASE_URL ?? 'https://images.example.com').replace(/\/+$/, '');
const [thumbnail, small, medium, large, xlarge] = (process.env.IMAGE_SIZES ?? '160,320,640,1024,1600')
  .split(',')
  .map(Number);
const SEGMENTS = {
  THUMBNAIL: `c${thumbnail}`,
  SMALL: `w${small}`,
  MEDIUM: `w${medium}`,
  LARGE: `w${large}`,
  XLARGE: `w${xlarge}`,
  ORIGINAL: 'original',
};

const typeDefs = gql`
  extend schema @link(url: "https://specs.apollo.dev/federation/v2.5", import: ["@key"])

  enum ImageSize { THUMBNAIL SMALL MEDIUM LARGE XLARGE ORIGINAL }
  enum ImageCategory {
    EXTERIOR LOBBY BEDROOM BATHROOM POOL RESTAURANT BAR SPA FITNESS MEETING VIEW BEACH AMENITY
    FOOD LOGO MAP OTHER
  }

  type Query {
    hotel(id: ID!): Hotel
  }

  type Hotel @key(fields: "id") {
    id: ID!
    mainImage: Image
    imageCount: Int!
    gallery(first: Int = 20, after: String): ImageConnection!
  }

  type Image @key(fields: "id") {
    id: ID!
    url(size: ImageSize = LARGE): String!
    width: Int
    height: Int
    aspectRatio: Float
    caption: String
    category: ImageCategory
  }

  type ImageConnection {
    edges: [ImageEdge!]!
    nodes: [Image!]!
    pageInfo: PageInfo!
    totalCount: Int!
  }
  type ImageEdge { cursor: String! node: Image! }
  type PageInfo { hasNextPage: Boolean! hasPreviousPage: Boolean! startCursor: String endCursor: String }
`;

// SQL statements sent so far, served on PORT + 1 for the benchmark (as the subgraph's
// `db_statements_total`).
let statements = 0;

// One statement per batch, keyed by ID, results in key order (null for unknown).
function byId(sql) {
  return async (ids) => {
    statements += 1;
    const { rows } = await pool.query(sql, [ids]);
    const found = new Map(rows.map((row) => [String(row.id), row]));
    return ids.map((id) => found.get(String(id)) ?? null);
  };
}
const loadHotels = byId(
  'SELECT id, main_image_id, image_count, gallery FROM hotel WHERE id = ANY($1::bigint[])',
);
const loadImages = byId(
  'SELECT id, storage_key, width, height, caption, category, status FROM image WHERE id = ANY($1::bigint[])',
);

const cursor = (position) => Buffer.from(`g:${position}`).toString('base64url');
const position = (after) => {
  const [prefix, value] = Buffer.from(after, 'base64url').toString().split(':');
  return prefix === 'g' && /^\d+$/.test(value) ? Number(value) : null;
};

const resolvers = {
  Query: {
    hotel: (_, { id }) => ({ id }),
  },
  Hotel: {
    __resolveReference: (ref) => ({ id: ref.id }),
    mainImage: async ({ id }, _, { hotels, images }) => {
      const hotel = await hotels.load(id);
      return hotel?.main_image_id ? images.load(hotel.main_image_id) : null;
    },
    imageCount: async ({ id }, _, { hotels }) => (await hotels.load(id))?.image_count ?? 0,
    gallery: async ({ id }, { first, after }, { hotels, images }) => {
      if (first < 1 || first > 100) throw new Error('`first` must be between 1 and 100');
      const hotel = await hotels.load(id);
      const gallery = hotel?.gallery ? hotel.gallery.split(',').filter(Boolean) : [];
      let start = 0;
      if (after != null) {
        const at = position(after);
        if (at == null) throw new Error('invalid cursor');
        start = Math.min(at + 1, gallery.length);
      }
      const end = Math.min(start + first, gallery.length);
      const loaded = await images.loadMany(gallery.slice(start, end));
      const edges = [];
      loaded.forEach((image, i) => {
        if (image && !(image instanceof Error)) edges.push({ cursor: cursor(start + i), node: image });
      });
      return {
        edges,
        nodes: edges.map((e) => e.node),
        pageInfo: {
          hasNextPage: end < gallery.length,
          hasPreviousPage: start > 0,
          startCursor: edges[0]?.cursor ?? null,
          endCursor: edges.at(-1)?.cursor ?? null,
        },
        totalCount: gallery.length,
      };
    },
  },
  Image: {
    __resolveReference: (ref, { images }) => images.load(ref.id),
    id: (image) => String(image.id),
    url: (image, { size }) => `${base}/${SEGMENTS[size]}/${image.storage_key.replace(/^\/+/, '')}`,
    aspectRatio: ({ width, height }) => (width > 0 && height > 0 ? width / height : null),
    category: (image) => image.category,
  },
};

const server = new ApolloServer({
  schema: buildSubgraphSchema({ typeDefs, resolvers }),
  introspection: false,
});
const { url } = await startStandaloneServer(server, {
  listen: { port: Number(process.env.PORT ?? 4100), host: '127.0.0.1' },
  // Loaders are per request: no cache shared between requests.
  context: async () => ({ hotels: new DataLoader(loadHotels), images: new DataLoader(loadImages) }),
});
createServer((_, res) => res.end(String(statements))).listen(Number(process.env.PORT ?? 4100) + 1, '127.0.0.1');
console.log(`apollo subgraph ready at ${url}`);
