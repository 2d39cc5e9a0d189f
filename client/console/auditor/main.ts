import { initLanguage } from '../common/i18n.js';
initLanguage();
