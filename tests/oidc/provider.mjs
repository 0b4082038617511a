// A real OpenID provider for the login tests (npm oidc-provider), on 127.0.0.1.
// Settings come from the environment that tests/oidc_provider.py passes:
//   PORT, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, POST_LOGOUT_REDIRECT_URI,
//   AUDIENCE (the access tokens' aud), ACCESS_TOKEN_TTL (seconds).
// Accounts: "alice" (admin), "uploader" (asset-uploader), "nobody" (no role).
// The login page is a plain form (field "login") that also grants consent.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import http from 'node:http';
import Provider from 'oidc-provider';

const env = process.env;
const port = Number(env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const resource = 'urn:iotsupport:api';
const accounts = {
  alice: { email: 'alice@example.com', name: 'Alice Admin', roles: ['admin'] },
  uploader: { email: 'ci@example.com', name: 'CI Uploader', roles: ['asset-uploader'] },
  nobody: { email: 'nobody@example.com', name: 'No Body', roles: [] },
};

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), use: 'sig', alg: 'RS256' };

const provider = new Provider(issuer, {
  clients: [{
    client_id: env.CLIENT_ID,
    client_secret: env.CLIENT_SECRET,
    redirect_uris: [env.REDIRECT_URI],
    post_logout_redirect_uris: [env.POST_LOGOUT_REDIRECT_URI],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
  }],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomUUID()] },
  scopes: ['openid', 'profile', 'email', 'offline_access'],
  claims: { openid: ['sub'], profile: ['name'], email: ['email'] },
  async findAccount(_ctx, id) {
    const account = accounts[id];
    if (!account) return undefined;
    return { accountId: id, async claims() { return { sub: id, name: account.name, email: account.email }; } };
  },
  async extraTokenClaims(_ctx, token) {
    const account = accounts[token.accountId];
    return account ? { roles: account.roles, email: account.email, name: account.name } : undefined;
  },
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  ttl: { AccessToken: Number(env.ACCESS_TOKEN_TTL), RefreshToken: 3600, IdToken: 3600 },
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: {
      enabled: true,
      async logoutSource(ctx, form) {
        ctx.body = `<!doctype html><html><body>${form}`
          + '<button type="submit" form="op.logoutForm" name="logout" value="yes">Sign out</button></body></html>';
      },
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => resource,
      useGrantedResource: async () => true,
      getResourceServerInfo: async () => ({
        scope: 'api',
        audience: env.AUDIENCE,
        accessTokenTTL: Number(env.ACCESS_TOKEN_TTL),
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
});

async function readForm(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
}

async function interaction(req, res, uid) {
  if (req.method === 'GET') {
    res.setHeader('Content-Type', 'text/html');
    res.end(`<!doctype html><form method="post" action="/interaction/${uid}">`
      + '<input name="login"><button>Sign in</button></form>');
    return;
  }
  const details = await provider.interactionDetails(req, res);
  const login = (await readForm(req)).get('login');
  if (!accounts[login]) {
    res.statusCode = 400;
    res.end('unknown account');
    return;
  }
  const grant = new provider.Grant({ accountId: login, clientId: details.params.client_id });
  grant.addOIDCScope('openid profile email offline_access');
  grant.addResourceScope(resource, 'api');
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { login: { accountId: login }, consent: { grantId } }, {
    mergeWithLastSubmission: false,
  });
}

const callback = provider.callback();
http.createServer((req, res) => {
  const match = /^\/interaction\/([\w-]+)$/.exec(req.url);
  if (match) {
    interaction(req, res, match[1]).catch((error) => {
      res.statusCode = 500;
      res.end(String(error));
    });
    return;
  }
  callback(req, res);
}).listen(port, '127.0.0.1', () => console.log(`listening ${issuer}`));
