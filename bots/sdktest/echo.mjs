// A long-polling bot written with MAX's official SDK, as any MAX bot is:
// only its base URL points at a Gonets node. tools/botsdk_test.go runs
// it. It logs each update's type as a JSON line, echoes text with a
// callback button, answers the button, and on "photo" and "file" uploads
// the files named by PHOTO and BIGFILE (multipart and chunked) and sends
// them back.
import { readFileSync } from 'node:fs';
import { Bot, Keyboard } from '@maxhub/max-bot-api';

const { MAX_BASE_URL: baseUrl, MAX_TOKEN: token } = process.env;
if (!baseUrl || !token) {
  console.error('set MAX_BASE_URL and MAX_TOKEN');
  process.exit(2);
}
const log = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const bot = new Bot(token, { clientOptions: { baseUrl } });
bot.catch((err) => log({ error: String(err?.message ?? err) }));
bot.use(async (ctx, next) => {
  log({ update: ctx.update.update_type, chat: ctx.chatId ?? null });
  return next();
});
bot.on('message_created', async (ctx) => {
  const text = ctx.message.body.text ?? '';
  if (text === 'photo') {
    const img = await ctx.api.uploadImage({ source: readFileSync(process.env.PHOTO), timeout: 60000 });
    const sent = await ctx.reply('a photo', { attachments: [img.toJson()] });
    log({ sent: 'photo', mid: sent.body.mid });
    return;
  }
  if (text === 'file') {
    const file = await ctx.api.uploadFile({ source: process.env.BIGFILE, timeout: 300000 });
    const sent = await ctx.reply('a file', { attachments: [file.toJson()] });
    log({ sent: 'file', mid: sent.body.mid });
    return;
  }
  const sent = await ctx.reply(`echo: ${text}`, {
    attachments: [Keyboard.inlineKeyboard([[Keyboard.button.callback('Yes', 'yes')]])],
  });
  log({ sent: 'echo', mid: sent.body.mid });
});
bot.on('message_callback', async (ctx) => {
  await ctx.answerOnCallback({ notification: `ok: ${ctx.callback.payload}` });
  log({ answered: ctx.callback.payload });
});
process.on('SIGTERM', () => {
  bot.stopPolling();
  process.exit(0);
});
const me = await bot.api.getMyInfo();
log({ ready: me.user_id, username: me.username });
await bot.start();
