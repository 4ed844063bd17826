// Drives MAX's official SDK (@maxhub/max-bot-api) against a Bot API at
// MAX_BASE_URL: every Api call the node serves, then the Bot's polling
// loop answering one message. Prints one JSON line per call:
// {"call": name, "result": …} or {"call": name, "error": {status, code}}.
// Used by TestMAXSDK (sdk_test.go).
const path = require('path');
const { Bot, Keyboard } = require(path.join(process.env.MAX_SDK, '@maxhub/max-bot-api'));

const bot = new Bot(process.env.MAX_TOKEN, { clientOptions: { baseUrl: process.env.MAX_BASE_URL } });
const api = bot.api;
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
async function call(name, fn) {
  try {
    out({ call: name, result: await fn() });
  } catch (e) {
    out({ call: name, error: { status: e.status, code: e.code, message: String(e.message) } });
  }
}

(async () => {
  await call('getMyInfo', () => api.getMyInfo());
  await call('setMyCommands', () => api.setMyCommands([{ name: 'start', description: 'Start' }]));
  await call('deleteMyCommands', () => api.deleteMyCommands());
  await call('getAllChats', () => api.getAllChats({ count: 10 }));
  await call('getChat', () => api.getChat(7));
  await call('editChatInfo', () => api.editChatInfo(7, { title: 'New' }));
  await call('sendAction', () => api.sendAction(7, 'typing_on'));
  await call('getChatMembers', () => api.getChatMembers(7, { user_ids: [1, 2] }));
  await call('addChatMembers', () => api.addChatMembers(7, [3]));
  await call('removeChatMember', () => api.removeChatMember(7, 3));
  await call('getChatMembership', () => api.getChatMembership(7));
  await call('getChatAdmins', () => api.getChatAdmins(7));
  await call('leaveChat', () => api.leaveChat(7));
  await call('sendMessageToChat', () => api.sendMessageToChat(7, 'hi', {
    format: 'markdown',
    attachments: [Keyboard.inlineKeyboard([
      [Keyboard.button.callback('Yes', 'y'), Keyboard.button.link('Site', 'https://example.org/')],
      [Keyboard.button.requestContact('Contact'), Keyboard.button.message('Msg'), Keyboard.button.openApp('App', 'echo_bot')],
    ])],
  }));
  await call('sendMessageToUser', () => api.sendMessageToUser(5, 'dm'));
  await call('getMessages', () => api.getMessages(7, { count: 5 }));
  await call('getMessagesByID', () => api.getMessages(7, { message_ids: ['mid.7.1', 'mid.7.2'] }));
  await call('getMessage', () => api.getMessage('mid.7.1'));
  await call('editMessage', () => api.editMessage('mid.7.1', { text: 'edited' }));
  await call('deleteMessage', () => api.deleteMessage('mid.7.1'));
  await call('answerOnCallback', () => api.answerOnCallback('cb1', { notification: 'ok' }));
  await call('getUploadUrl', () => api.raw.uploads.getUploadUrl({ type: 'file' }));
  await call('getSubscriptions', () => api.getSubscriptions());
  await call('subscribe', () => api.subscribe('https://bot.example/hook', 's3cr3t', ['message_created']));
  await call('unsubscribe', () => api.unsubscribe('https://bot.example/hook'));
  await call('tooLong', () => api.sendMessageToChat(7, 'x'.repeat(4001)));

  // The polling loop: reply to the first message, then stop.
  bot.catch((err) => { out({ call: 'handler', error: { message: String(err) } }); process.exit(1); });
  bot.on('message_created', async (ctx) => {
    const sent = await ctx.reply(`echo: ${ctx.message.body.text}`);
    out({ call: 'reply', result: sent });
    bot.stopPolling();
    process.exit(0);
  });
  await bot.start();
})();
