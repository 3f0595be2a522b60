module.exports = async () => {
  await globalThis.__POSTGRES_SERVER__?.stop();
};
