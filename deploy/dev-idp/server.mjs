// A development OpenID Connect server shaped like a Keycloak realm (oidc-provider).
//
//   node server.mjs [--port 8180] [--host 127.0.0.1] [--public-url http://idp:8180]
//
// Issuer:   <public-url>/realms/<realm>
// Token:    <issuer>/protocol/openid-connect/token   (client credentials grant)
// JWKS:     <issuer>/protocol/openid-connect/certs
// Access tokens are RS256 JWTs with aud, scope, azp and realm_access.roles, like Keycloak's
// with an audience mapper. Clients, secrets and roles come from realm.json. Signing keys are
// made at start-up (a restart is a key rotation). For development and tests only.
import http from 'node:http';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import Provider, { errors } from 'oidc-provider';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.DEV_IDP_PORT ?? '8180' },
    host: { type: 'string', default: process.env.DEV_IDP_HOST ?? '127.0.0.1' },
    'public-url': { type: 'string', default: process.env.DEV_IDP_PUBLIC_URL ?? '' },
    realm: { type: 'string', default: new URL('./realm.json', import.meta.url).pathname },
  },
});

const realm = JSON.parse(readFileSync(values.realm, 'utf8'));
const port = Number(values.port);
const base = (values['public-url'] || `http://${values.host}:${port}`).replace(/\/$/, '');
const prefix = `/realms/${realm.realm}`;
const issuer = `${base}${prefix}`;

const signingKey = {
  ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
  kid: randomUUID(),
  alg: 'RS256',
  use: 'sig',
};

const rolesOf = new Map(realm.clients.map((client) => [client.client_id, client.roles]));

const provider = new Provider(issuer, {
  // A client without roles (booking-service only reads) leaves scope out: oidc-provider
  // refuses an empty one.
  clients: realm.clients.map((client) => ({
    client_id: client.client_id,
    client_secret: client.client_secret,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    ...(client.roles.length ? { scope: client.roles.join(' ') } : {}),
  })),
  clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
  jwks: { keys: [signingKey] },
  scopes: realm.permissions,
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: false },
    revocation: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => realm.resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resource) => {
        if (resource !== realm.resource) throw new errors.InvalidTarget();
        return {
          scope: realm.permissions.join(' '),
          audience: realm.audience,
          accessTokenTTL: realm.access_token_ttl_seconds,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  extraTokenClaims: (_ctx, token) => ({
    azp: token.clientId,
    realm_access: { roles: rolesOf.get(token.clientId) ?? [] },
  }),
  routes: {
    token: '/protocol/openid-connect/token',
    jwks: '/protocol/openid-connect/certs',
    authorization: '/protocol/openid-connect/auth',
    userinfo: '/protocol/openid-connect/userinfo',
    end_session: '/protocol/openid-connect/logout',
  },
});

const handle = provider.callback();
const server = http.createServer((req, res) => {
  if (req.url === '/health' || req.url === '/health/ready') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"status":"ok"}');
    return;
  }
  if (req.url === prefix || req.url.startsWith(`${prefix}/`)) {
    req.originalUrl = req.url; // discovery must advertise the prefixed URLs
    req.url = req.url.slice(prefix.length) || '/';
    handle(req, res);
    return;
  }
  res.writeHead(404, { 'content-type': 'application/json' });
  res.end('{"error":"not_found"}');
});

server.listen(port, values.host, () => {
  console.log(JSON.stringify({ event: 'dev idp listening', issuer, port }));
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
