// A small stand-in for the accommodation subgraph: the contract's SDL
// (`schema/accommodation.graphql`) over ten hotels whose IDs are those of the images
// subgraph's demo catalog (1..10).

import { readFileSync } from 'node:fs';

import { ApolloServer } from '@apollo/server';
import { ApolloServerPluginInlineTraceDisabled } from '@apollo/server/plugin/disabled';
import { startStandaloneServer } from '@apollo/server/standalone';
import { buildSubgraphSchema } from '@apollo/subgraph';
import { parse } from 'graphql';

export const HOTELS = [
  { id: '1', name: 'Hotel Aurora', city: 'Lisbon', stars: 4 },
  { id: '2', name: 'Casa do Rio', city: 'Porto', stars: 3 },
  { id: '3', name: 'Palácio Verde', city: 'Lisbon', stars: 5 },
  { id: '4', name: 'Hostel Mar', city: 'Faro', stars: 2 },
  { id: '5', name: 'Grand Tejo', city: 'Lisbon', stars: 3 },
  { id: '6', name: 'Ribeira Inn', city: 'Porto', stars: 3 },
  { id: '7', name: 'Alfama Suites', city: 'Lisbon', stars: 4 },
  { id: '8', name: 'Douro View', city: 'Porto', stars: 4 },
  { id: '9', name: 'Marina Lodge', city: 'Faro', stars: 3 },
  { id: '10', name: 'Sintra Palace', city: 'Lisbon', stars: null },
];

const byId = (id) => HOTELS.find((hotel) => hotel.id === String(id)) ?? null;

const resolvers = {
  Query: {
    // Best first: more stars, then lower ID.
    searchHotels: (_, { city, first }) =>
      HOTELS.filter((hotel) => hotel.city === city)
        .sort((a, b) => (b.stars ?? 0) - (a.stars ?? 0) || Number(a.id) - Number(b.id))
        .slice(0, first),
    accommodation: (_, { id }) => byId(id),
  },
  Hotel: {
    __resolveReference: ({ id }) => byId(id),
  },
};

/// Starts the subgraph on a free port; returns its URL and a function that stops it.
export async function startAccommodation(sdlFile) {
  const typeDefs = parse(readFileSync(sdlFile, 'utf8'));
  const server = new ApolloServer({
    schema: buildSubgraphSchema({ typeDefs, resolvers }),
    plugins: [ApolloServerPluginInlineTraceDisabled()],
  });
  const { url } = await startStandaloneServer(server, { listen: { host: '127.0.0.1', port: 0 } });
  return { url, stop: () => server.stop() };
}
