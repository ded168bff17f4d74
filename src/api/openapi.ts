import type { OpenAPIV3_1 } from 'openapi-types';
import { z } from 'zod';
import { isJsonAnswer, routes, type ApiRoute, type RawContent } from './routes.js';
import { PROBLEM_TYPE, problemSchema } from './schemas.js';

/*
 * The OpenAPI 3.1 document of the provider API, generated from the route table alone (./routes.ts,
 * through zod's own z.toJSONSchema): the node serves it at GET /v1/openapi.json and `npm run build`
 * writes it to docs/api/openapi.json (scripts/write-openapi.mjs); test/api/openapi.test.ts checks
 * that both are the same document and that it is valid OpenAPI 3.1. Everything is described as it
 * travels (zod's input side: amounts as decimal strings, hashes as 0x-hex).
 */

type Schema = OpenAPIV3_1.SchemaObject;
/** A piece of the document being built (the whole is checked by test/api/openapi.test.ts). */
type Json = Record<string, unknown>;

function jsonSchema(schema: z.ZodType): Schema {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, {
    target: 'draft-2020-12',
    io: 'input',
    // refinements (an address's checksum, a model id's codec) have no JSON Schema: documented as types
    unrepresentable: 'any',
  }) as Schema & { $schema?: string };
  return rest;
}

/** The parameters an object schema of path parameters or of the query declares. */
function parameters(schema: z.ZodType | undefined, where: 'path' | 'query' | 'header'): Json[] {
  if (!schema) return [];
  const object = jsonSchema(schema);
  const required = new Set(object.required ?? []);
  return Object.entries(object.properties ?? {}).map(([name, property]) => ({
    name,
    in: where,
    required: where === 'path' || required.has(name),
    schema: property as Schema,
  }));
}

const bytes = (raw: RawContent): Json => ({
  schema: { type: 'string', contentMediaType: raw.type, description: raw.description },
});

const jsonHeader = (raw: RawContent) =>
  raw.header && {
    name: raw.header.name,
    description: `JSON beside a ${raw.type} body`,
    content: { 'application/json': { schema: jsonSchema(raw.header.schema) } },
  };

function operation(id: string, route: ApiRoute): Json {
  const requestHeader = route.rawBody && jsonHeader(route.rawBody);
  const answerHeader = route.rawResponse && jsonHeader(route.rawResponse);
  const answer: Json = {
    description: route.summary,
    content: {
      ...(isJsonAnswer(route)
        ? { 'application/json': { schema: jsonSchema(route.response) } }
        : { [route.response.type]: bytes(route.response as RawContent) }),
      ...(route.rawResponse ? { [route.rawResponse.type]: bytes(route.rawResponse) } : {}),
    },
    ...(answerHeader
      ? {
          headers: {
            [answerHeader.name]: { description: answerHeader.description, content: answerHeader.content },
          },
        }
      : {}),
  };
  return {
    operationId: id,
    summary: route.summary,
    ...(route.description ? { description: route.description } : {}),
    ...(route.admin ? { security: [{ adminToken: [] }] } : {}),
    ...(route.session ? { security: [{ sessionKey: [] }] } : {}),
    parameters: [
      ...parameters(route.params, 'path'),
      ...parameters(route.query, 'query'),
      ...parameters(route.headers, 'header'),
      ...(requestHeader ? [{ ...requestHeader, in: 'header', required: false }] : []),
    ],
    ...(route.body || route.rawBody
      ? {
          requestBody: {
            required: true,
            content: {
              ...(route.body ? { 'application/json': { schema: jsonSchema(route.body) } } : {}),
              ...(route.rawBody ? { [route.rawBody.type]: bytes(route.rawBody) } : {}),
            },
          },
        }
      : {}),
    responses: {
      200: answer,
      ...Object.fromEntries((route.alsoAnswers ?? []).map((status) => [status, answer])),
      default: route.errors
        ? {
            description: route.errors.description,
            content: { 'application/json': { schema: jsonSchema(route.errors.schema) } },
          }
        : {
            description: 'an error: problem+json, its code the contract',
            content: { [PROBLEM_TYPE]: { schema: { $ref: '#/components/schemas/Problem' } } },
          },
    },
  };
}

/** The document, from the route table. */
export function openApiDocument(): OpenAPIV3_1.Document {
  const paths: Record<string, Json> = {};
  for (const [id, route] of Object.entries(routes) as [string, ApiRoute][]) {
    const path = route.path.replace(/:(\w+)/g, '{$1}');
    paths[path] = { ...paths[path], [route.method.toLowerCase()]: operation(id, route) };
  }
  const document: Json = {
    openapi: '3.1.0',
    info: {
      title: 'Glassbox provider API',
      version: '1',
      description:
        'What any client and any provider exchange (docs/protocol.md). Generated from src/api/routes.ts; do not edit.',
    },
    paths,
    components: {
      schemas: { Problem: jsonSchema(problemSchema) },
      securitySchemes: {
        adminToken: { type: 'http', scheme: 'bearer' },
        sessionKey: {
          type: 'http',
          scheme: 'bearer',
          description: "a client's session key gbk.<client>.<expiresAt>.<signature> (glassbox key)",
        },
      },
    },
  };
  return document as unknown as OpenAPIV3_1.Document;
}
