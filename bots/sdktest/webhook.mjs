// A webhook bot written with MAX's official SDK: an HTTPS server (the
// certificate and key in HOOK_CERT and HOOK_KEY) on HOOK_PORT whose
// handler is the SDK's, registered with the node through the SDK with
// the secret HOOK_SECRET. It replies "hook: <text>" to each message.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { Bot } from '@maxhub/max-bot-api';

const { MAX_BASE_URL: baseUrl, MAX_TOKEN: token, HOOK_PORT: port, HOOK_SECRET: secret } = process.env;
const log = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const bot = new Bot(token, { clientOptions: { baseUrl } });
bot.catch((err) => log({ error: String(err?.message ?? err) }));
bot.on('message_created', async (ctx) => {
  log({ update: 'message_created' });
  const sent = await ctx.reply(`hook: ${ctx.message.body.text ?? ''}`);
  log({ sent: 'hook', mid: sent.body.mid });
});
const handler = await bot.createWebhook({ domain: `127.0.0.1:${port}`, path: '/hook', secret });
const server = createServer({ cert: readFileSync(process.env.HOOK_CERT), key: readFileSync(process.env.HOOK_KEY) }, handler);
await new Promise((resolve) => server.listen(Number(port), '127.0.0.1', resolve));
const subs = await bot.api.getSubscriptions();
log({ ready: true, subscriptions: subs.map((s) => s.url) });
process.on('SIGTERM', () => {
  server.close();
  process.exit(0);
});
