/** The local OpenAI-compatible gateway to the network (issue 14, D4): see ./gateway.ts. */
export {
  buildGatewayApp,
  createGateway,
  GATEWAY_HEADERS,
  type Gateway,
  type GatewayOptions,
} from './gateway.js';
export { gatewayExtraSchema, gatewayRoutes, type GatewayExtra, type GatewayModel } from './routes.js';
